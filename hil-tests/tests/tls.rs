//! TLS to the broker with certificates made here (rcgen): the right CA
//! connects, a wrong CA or a wrong host name is refused — and the agent never
//! falls back to plaintext — and mutual TLS works with a client certificate
//! and fails without one.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};
use spindle_hil_tests::agent::AgentProcess;
use spindle_hil_tests::broker::{Broker, free_port};
use spindle_hil_tests::one_at_a_time;
use spindle_hil_tests::plant::{Plant, agent_toml};
use spindle_hil_tests::subscriber::Subscriber;

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn make_ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

fn leaf(
    dir: &Path,
    name: &str,
    sans: &[&str],
    usage: ExtendedKeyUsagePurpose,
    issuer: &CertifiedIssuer<'_, KeyPair>,
) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.extended_key_usages = vec![usage];
    let cert = params.signed_by(&key, issuer).unwrap();
    std::fs::write(dir.join(format!("{name}.pem")), cert.pem()).unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
}

/// A CA, a server certificate for 127.0.0.1 and one for another name, a
/// client certificate, and an unrelated CA.
fn pki() -> Pki {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_ca("spindle test CA");
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(
        dir.path().join("other-ca.pem"),
        make_ca("some other CA").pem(),
    )
    .unwrap();
    leaf(
        dir.path(),
        "server",
        &["127.0.0.1", "localhost"],
        ExtendedKeyUsagePurpose::ServerAuth,
        &ca,
    );
    leaf(
        dir.path(),
        "wrong-name",
        &["broker.elsewhere.invalid"],
        ExtendedKeyUsagePurpose::ServerAuth,
        &ca,
    );
    leaf(
        dir.path(),
        "client",
        &[],
        ExtendedKeyUsagePurpose::ClientAuth,
        &ca,
    );
    Pki { dir }
}

/// A broker with a plain listener (for the test's subscriber) and a TLS listener.
fn tls_broker(pki: &Pki, server: &str, require_client_cert: bool) -> (Broker, u16) {
    let tls_port = free_port().unwrap();
    let extra = format!(
        "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate {require_client_cert}\n",
        pki.path("ca.pem").display(),
        pki.path(&format!("{server}.pem")).display(),
        pki.path(&format!("{server}.key")).display(),
    );
    (Broker::start_with(false, &extra).unwrap(), tls_port)
}

fn tls_config(plant: &Plant, port: u16, ca: &Path, client: Option<(&Path, &Path)>) -> String {
    let config = agent_toml(
        &format!("mqtts://127.0.0.1:{port}"),
        "",
        &plant.devices_toml("200ms"),
    );
    let mut tls = format!("ca_file = \"{}\"\n", ca.display());
    if let Some((cert, key)) = client {
        tls = format!(
            "{tls}cert_file = \"{}\"\nkey_file = \"{}\"\n",
            cert.display(),
            key.display()
        );
    }
    config.replacen(
        "keep_alive = \"5s\"\n",
        &format!("keep_alive = \"5s\"\n{tls}"),
        1,
    )
}

fn arrives(sub: &Subscriber, within: Duration) -> bool {
    sub.wait_until(within, |m| {
        m.iter().any(|x| x.topic.contains("/telemetry/"))
    })
    .0
}

#[test]
fn the_agent_connects_over_tls_with_the_right_ca() {
    let _serial = one_at_a_time();
    let pki = pki();
    let plant = Plant::tcp(1).unwrap();
    let (broker, tls_port) = tls_broker(&pki, "server", false);
    let sub = Subscriber::start(broker.port(), "spindle/#").unwrap();
    let agent =
        AgentProcess::start(&tls_config(&plant, tls_port, &pki.path("ca.pem"), None)).unwrap();
    assert!(
        arrives(&sub, Duration::from_secs(15)),
        "telemetry over TLS; log:\n{}",
        agent.log()
    );
}

#[test]
fn a_wrong_ca_or_host_name_is_refused_and_nothing_goes_out_in_plaintext() {
    let _serial = one_at_a_time();
    let pki = pki();
    let plant = Plant::tcp(1).unwrap();
    // Wrong CA.
    let (broker, tls_port) = tls_broker(&pki, "server", false);
    let sub = Subscriber::start(broker.port(), "spindle/#").unwrap();
    let agent = AgentProcess::start(&tls_config(
        &plant,
        tls_port,
        &pki.path("other-ca.pem"),
        None,
    ))
    .unwrap();
    let (ok, _) = sub.wait_until(Duration::from_secs(4), |m| !m.is_empty());
    assert!(
        !ok,
        "nothing may arrive when the broker's certificate is not from the configured CA"
    );
    let log = agent.log();
    assert!(log.contains("MQTT connection attempt failed"), "{log}");
    assert!(
        log.to_lowercase().contains("certificate") || log.contains("TLS"),
        "the failure names TLS: {log}"
    );
    drop(agent);
    // Right CA, but the certificate is for another host name.
    let (broker, tls_port) = tls_broker(&pki, "wrong-name", false);
    let sub = Subscriber::start(broker.port(), "spindle/#").unwrap();
    let agent =
        AgentProcess::start(&tls_config(&plant, tls_port, &pki.path("ca.pem"), None)).unwrap();
    let (ok, _) = sub.wait_until(Duration::from_secs(4), |m| !m.is_empty());
    assert!(
        !ok,
        "nothing may arrive when the certificate is for another name"
    );
    assert!(
        agent.log().contains("MQTT connection attempt failed"),
        "{}",
        agent.log()
    );
}

#[test]
fn mutual_tls_works_with_a_client_certificate_and_fails_without_one() {
    let _serial = one_at_a_time();
    let pki = pki();
    let plant = Plant::tcp(1).unwrap();
    let (broker, tls_port) = tls_broker(&pki, "server", true);
    let sub = Subscriber::start(broker.port(), "spindle/#").unwrap();
    let without =
        AgentProcess::start(&tls_config(&plant, tls_port, &pki.path("ca.pem"), None)).unwrap();
    let (ok, _) = sub.wait_until(Duration::from_secs(4), |m| !m.is_empty());
    assert!(
        !ok,
        "a broker that requires a client certificate refuses the agent without one"
    );
    assert!(
        without.log().contains("MQTT connection attempt failed"),
        "{}",
        without.log()
    );
    drop(without);
    let with = AgentProcess::start(&tls_config(
        &plant,
        tls_port,
        &pki.path("ca.pem"),
        Some((&pki.path("client.pem"), &pki.path("client.key"))),
    ))
    .unwrap();
    assert!(
        arrives(&sub, Duration::from_secs(15)),
        "mutual TLS; log:\n{}",
        with.log()
    );
}

//! The moto S3 server (PyPI `moto[server]`, a stand-in for MinIO/S3) for the
//! S3 step tests: started on a free 127.0.0.1 port, killed on drop, with a
//! Python (boto3) helper and an object_store client for setting up and
//! reading back buckets, and a TCP [`Relay`] to put faults between a step and it. Used by `s3_mirror.rs` and `s3_upload.rs`
//! (`use runbook_test_support::moto;`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use object_store::ObjectStoreExt;

use runbook_steps::runtime::secret::Secret;
use runbook_steps::s3::alias::{ExplicitEndpoint, ResolveOptions, S3Endpoint};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use crate::support::{ChildGuard, free_port, venv_bin, wait_for_port};

/// A moto S3 server on loopback, killed on drop.
pub struct Moto {
    _child: ChildGuard,
    /// The port it listens on.
    pub port: u16,
    /// The CA that signed the server's certificate, when it speaks HTTPS.
    tls_ca: Option<PathBuf>,
}

/// Python prelude for [`Moto::python`]: boto3 clients for the server
/// (`client(service, ak, sk)`, and `s3` with moto's default keys).
const PY_PRELUDE: &str = r#"
import boto3, json, os, urllib.request
ep = os.environ["ENDPOINT"]
def client(service, ak="test", sk="test"):
    return boto3.client(service, endpoint_url=ep, region_name="us-east-1",
                        aws_access_key_id=ak, aws_secret_access_key=sk)
s3 = client("s3")
"#;

/// Python: writes a private CA and a server certificate for 127.0.0.1 into argv[1].
const MAKE_CERTIFICATES: &str = r#"
import datetime, ipaddress, sys
from cryptography import x509
from cryptography.x509.oid import NameOID, ExtendedKeyUsageOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
out = sys.argv[1]
now = datetime.datetime.now(datetime.timezone.utc)
def builder(subject, issuer, public_key):
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1)))
ca_key = ec.generate_private_key(ec.SECP256R1())
ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "runbook test CA")])
ca = (builder(ca_name, ca_name, ca_key.public_key())
      .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
      .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
          content_commitment=False, key_encipherment=False, data_encipherment=False,
          key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
      .sign(ca_key, hashes.SHA256()))
key = ec.generate_private_key(ec.SECP256R1())
leaf = (builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]), ca_name, key.public_key())
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256()))
open(out + "/ca.crt", "wb").write(ca.public_bytes(serialization.Encoding.PEM))
open(out + "/server.crt", "wb").write(leaf.public_bytes(serialization.Encoding.PEM))
open(out + "/server.key", "wb").write(key.private_bytes(serialization.Encoding.PEM,
    serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()))
"#;

impl Moto {
    /// A plain-HTTP server.
    pub fn start() -> Moto {
        Self::start_with(&[], None)
    }

    /// A server speaking HTTPS with a certificate for 127.0.0.1 signed by a
    /// fresh private CA, written to `certs` (`ca.crt`, `server.crt`, `server.key`).
    pub fn start_tls(certs: &Path) -> Moto {
        let status = Command::new(venv_bin("python"))
            .arg("-c")
            .arg(MAKE_CERTIFICATES)
            .arg(certs)
            .status()
            .expect("run python");
        assert!(status.success(), "could not create test certificates");
        let cert = certs.join("server.crt").display().to_string();
        let key = certs.join("server.key").display().to_string();
        Self::start_with(&["-c", &cert, "-k", &key], Some(certs.join("ca.crt")))
    }

    fn start_with(extra_args: &[&str], tls_ca: Option<PathBuf>) -> Moto {
        let port = free_port();
        let child = Command::new(venv_bin("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .args(extra_args)
            // Small multipart parts, so a multipart object stays small.
            .env("S3_UPLOAD_PART_MIN_SIZE", "1024")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let child = ChildGuard(child);
        wait_for_port(port, "moto_server");
        Moto {
            _child: child,
            port,
            tls_ca,
        }
    }

    /// `http(s)://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        let scheme = if self.tls_ca.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Runs a Python snippet (after [`PY_PRELUDE`]) against the server; returns stdout.
    pub fn python(&self, script: &str) -> String {
        let mut command = Command::new(venv_bin("python"));
        command
            .arg("-c")
            .arg(format!("{PY_PRELUDE}\n{script}"))
            .env("ENDPOINT", self.url());
        if let Some(ca) = &self.tls_ca {
            command.env("AWS_CA_BUNDLE", ca);
        }
        let output = command.output().expect("run python");
        assert!(
            output.status.success(),
            "python failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// An object_store client for `bucket` with moto's default keys.
    pub fn store(&self, bucket: &str) -> object_store::aws::AmazonS3 {
        let endpoint = S3Endpoint::explicit(
            &ExplicitEndpoint {
                endpoint: self.url(),
                access_key: Some("test".into()),
                secret_key: Some(Secret::new("test")),
            },
            &ResolveOptions::default(),
        )
        .unwrap();
        endpoint
            .object_store(
                bucket,
                runbook_steps::s3::alias::transfer_client_options(),
                object_store::RetryConfig::default(),
            )
            .unwrap()
    }
}

/// An environment holding only `pairs`, for the steps' `*_with_env` (HOME
/// points nowhere useful unless given).
pub fn env_of(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> + use<> {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    move |name| map.get(name).cloned()
}

/// The environment of an S3 step with the alias `alias` (`MC_HOST_<alias>`)
/// pointing at 127.0.0.1:`port` with moto's keys, and a HOME with no config.
pub fn alias_env(alias: &str, port: u16, home: &Path) -> impl Fn(&str) -> Option<String> + use<> {
    env_of(&[
        (
            &format!("MC_HOST_{alias}"),
            format!("http://test:test@127.0.0.1:{port}"),
        ),
        ("HOME", home.display().to_string()),
    ])
}

/// Which way of each connection a [`Relay`] hands to its `forward` function.
#[derive(Clone, Copy, Debug)]
pub enum Watched {
    /// Client to server (uploads).
    Requests,
    /// Server to client (downloads).
    Answers,
}

/// A TCP relay on a free 127.0.0.1 port in front of `upstream`: a stand-in
/// for the network between a step and moto, to inject faults. For each
/// connection the other way is copied as is, and the watched way is handed
/// to `forward` (reader, writer), which passes on what it wants; the
/// connection ends when `forward` returns. Accepts no more once dropped.
pub struct Relay {
    /// The port to connect to instead of `upstream`.
    pub port: u16,
    accept_loop: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

impl Relay {
    /// Starts relaying to `upstream`; `forward` carries the `watched` way of each connection.
    pub async fn start<F, Fut>(upstream: u16, watched: Watched, forward: F) -> Relay
    where
        F: Fn(OwnedReadHalf, OwnedWriteHalf) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let forward = Arc::new(forward);
        let accept_loop = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let forward = Arc::clone(&forward);
                tokio::spawn(async move {
                    let server = tokio::net::TcpStream::connect(("127.0.0.1", upstream))
                        .await
                        .unwrap();
                    let (client_read, client_write) = client.into_split();
                    let (server_read, server_write) = server.into_split();
                    let ((mut copy_read, mut copy_write), (watched_read, watched_write)) =
                        match watched {
                            Watched::Requests => {
                                ((server_read, client_write), (client_read, server_write))
                            }
                            Watched::Answers => {
                                ((client_read, server_write), (server_read, client_write))
                            }
                        };
                    let copy = tokio::spawn(async move {
                        let _ = tokio::io::copy(&mut copy_read, &mut copy_write).await;
                    });
                    forward(watched_read, watched_write).await;
                    copy.abort();
                });
            }
        });
        Relay { port, accept_loop }
    }
}

/// Reading back what a step left in a bucket.
impl Moto {
    /// Keys of the multipart uploads started and neither completed nor aborted.
    pub fn incomplete_uploads(&self, bucket: &str) -> Vec<String> {
        let out = self.python(&format!(
            r#"print(json.dumps([u["Key"] for u in s3.list_multipart_uploads(Bucket="{bucket}").get("Uploads", [])]))"#
        ));
        serde_json::from_str(&out).unwrap()
    }

    /// Every object in `bucket`: key → content.
    pub async fn objects(&self, bucket: &str) -> BTreeMap<String, Vec<u8>> {
        let keys: Vec<String> = serde_json::from_str(&self.python(&format!(
            r#"print(json.dumps([o["Key"] for o in s3.list_objects_v2(Bucket="{bucket}").get("Contents", [])]))"#
        )))
        .unwrap();
        let store = self.store(bucket);
        let mut objects = BTreeMap::new();
        for key in keys {
            let data = store
                .get(&object_store::path::Path::from(key.as_str()))
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            objects.insert(key, data.to_vec());
        }
        objects
    }

    /// The ETag of an object.
    pub async fn etag(&self, bucket: &str, key: &str) -> String {
        self.store(bucket)
            .head(&object_store::path::Path::from(key))
            .await
            .unwrap()
            .e_tag
            .unwrap()
    }
}

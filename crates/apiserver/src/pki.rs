//! Cluster PKI: the CA, the API server's serving certificate and the admin client
//! certificate, generated on first start and reused afterwards, plus the admin kubeconfig.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// File locations of the cluster PKI inside the data directory.
#[derive(Clone, Debug)]
pub struct Pki {
    pub dir: PathBuf,
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub serving_cert: PathBuf,
    pub serving_key: PathBuf,
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    /// The client certificate the API server presents to kubelets
    /// (`kube-apiserver-kubelet-client`, group `system:masters`).
    pub kubelet_client_cert: PathBuf,
    pub kubelet_client_key: PathBuf,
    /// The service-account token signing key (ES256, PKCS#8 PEM) and its public key
    /// (`--service-account-key-file` / `--service-account-signing-key-file`).
    pub sa_key: PathBuf,
    pub sa_pub: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("pki i/o on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("certificate generation: {0}")]
    Gen(#[from] rcgen::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_private(path: &Path, contents: &str) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    f.write_all(contents.as_bytes()).map_err(io(path))?;
    f.sync_all().map_err(io(path))
}

fn name(cn: &str, orgs: &[&str]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for o in orgs {
        dn.push(DnType::OrganizationName, *o);
    }
    dn.push(DnType::CommonName, cn);
    dn
}

fn validity(params: &mut CertificateParams, days: i64) {
    use chrono::Datelike;
    let start = chrono::Utc::now() - chrono::Duration::days(1);
    let end = chrono::Utc::now() + chrono::Duration::days(days);
    params.not_before = rcgen::date_time_ymd(start.year(), start.month() as u8, start.day() as u8);
    params.not_after = rcgen::date_time_ymd(end.year(), end.month() as u8, end.day() as u8);
}

impl Pki {
    pub fn at(dir: &Path) -> Self {
        let dir = dir.join("pki");
        Pki {
            ca_cert: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            serving_cert: dir.join("apiserver.crt"),
            serving_key: dir.join("apiserver.key"),
            admin_cert: dir.join("admin.crt"),
            admin_key: dir.join("admin.key"),
            kubelet_client_cert: dir.join("apiserver-kubelet-client.crt"),
            kubelet_client_key: dir.join("apiserver-kubelet-client.key"),
            sa_key: dir.join("sa.key"),
            sa_pub: dir.join("sa.pub"),
            dir,
        }
    }

    /// Create whatever is missing: the CA first, then certificates signed by it.
    /// `hosts` are the serving certificate's subject alternative names.
    pub fn ensure(&self, hosts: &[String]) -> Result<(), PkiError> {
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        if !self.ca_cert.exists() || !self.ca_key.exists() {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params.distinguished_name = name("flotilla-ca", &[]);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            validity(&mut params, 3650);
            let cert = params.self_signed(&key)?;
            write_private(&self.ca_key, &key.serialize_pem())?;
            write_private(&self.ca_cert, &cert.pem())?;
            // A new CA invalidates every certificate signed by an old one.
            for p in [
                &self.serving_cert,
                &self.admin_cert,
                &self.kubelet_client_cert,
            ] {
                let _ = std::fs::remove_file(p);
            }
        }
        let ca_key_pem = std::fs::read_to_string(&self.ca_key).map_err(io(&self.ca_key))?;
        let ca_cert_pem = std::fs::read_to_string(&self.ca_cert).map_err(io(&self.ca_cert))?;
        let ca_key = KeyPair::from_pem(&ca_key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(&ca_cert_pem, ca_key)?;

        if !self.serving_cert.exists()
            || !self.serving_key.exists()
            || !self.serving_cert_covers(hosts)
        {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params.distinguished_name = name("kube-apiserver", &[]);
            let mut sans: Vec<SanType> = Vec::new();
            let mut all_hosts: Vec<String> = vec![
                "localhost".into(),
                "kubernetes".into(),
                "kubernetes.default".into(),
                "kubernetes.default.svc".into(),
                "kubernetes.default.svc.cluster.local".into(),
                "127.0.0.1".into(),
                "::1".into(),
            ];
            all_hosts.extend(
                hosts
                    .iter()
                    .filter(|h| {
                        h.parse::<std::net::IpAddr>()
                            .map_or(true, |ip| !ip.is_unspecified())
                    })
                    .cloned(),
            );
            all_hosts.sort();
            all_hosts.dedup();
            for h in all_hosts {
                match h.parse::<std::net::IpAddr>() {
                    Ok(ip) => sans.push(SanType::IpAddress(ip)),
                    Err(_) => sans.push(SanType::DnsName(h.as_str().try_into()?)),
                }
            }
            params.subject_alt_names = sans;
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyEncipherment,
            ];
            validity(&mut params, 3650);
            let cert = params.signed_by(&key, &issuer)?;
            write_private(&self.serving_key, &key.serialize_pem())?;
            write_private(&self.serving_cert, &cert.pem())?;
        }
        if !self.admin_cert.exists() || !self.admin_key.exists() {
            let (cert, key) = self.client_cert(&issuer, "admin", &["system:masters"])?;
            write_private(&self.admin_key, &key)?;
            write_private(&self.admin_cert, &cert)?;
        }
        if !self.kubelet_client_cert.exists() || !self.kubelet_client_key.exists() {
            let (cert, key) = self.client_cert(
                &issuer,
                "kube-apiserver-kubelet-client",
                &["system:masters"],
            )?;
            write_private(&self.kubelet_client_key, &key)?;
            write_private(&self.kubelet_client_cert, &cert)?;
        }
        if !self.sa_key.exists() || !self.sa_pub.exists() {
            // ECDSA P-256 (rcgen's default), used as ES256.
            let key = KeyPair::generate()?;
            write_private(&self.sa_key, &key.serialize_pem())?;
            write_private(&self.sa_pub, &key.public_key_pem())?;
        }
        Ok(())
    }

    /// Whether the serving certificate names every one of `hosts` (a new `--tls-san`
    /// or a new host address re-issues it, as k3s does).
    fn serving_cert_covers(&self, hosts: &[String]) -> bool {
        let Ok(pem) = std::fs::read(&self.serving_cert) else {
            return false;
        };
        let Some(Ok(der)) = rustls_pemfile::certs(&mut pem.as_slice()).next() else {
            return false;
        };
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
            return false;
        };
        let Ok(Some(san)) = cert.subject_alternative_name() else {
            return false;
        };
        let mut names: Vec<String> = Vec::new();
        let mut ips: Vec<std::net::IpAddr> = Vec::new();
        for n in &san.value.general_names {
            match n {
                x509_parser::extensions::GeneralName::DNSName(d) => {
                    names.push(d.to_ascii_lowercase())
                }
                x509_parser::extensions::GeneralName::IPAddress(b) => {
                    if let Ok(a) = <[u8; 4]>::try_from(*b) {
                        ips.push(std::net::IpAddr::from(a));
                    } else if let Ok(a) = <[u8; 16]>::try_from(*b) {
                        ips.push(std::net::IpAddr::from(a));
                    }
                }
                _ => {}
            }
        }
        hosts.iter().all(|h| match h.parse::<std::net::IpAddr>() {
            Ok(ip) => ip.is_unspecified() || ips.contains(&ip),
            Err(_) => names.contains(&h.to_ascii_lowercase()),
        })
    }

    fn client_cert(
        &self,
        issuer: &Issuer<'_, KeyPair>,
        user: &str,
        groups: &[&str],
    ) -> Result<(String, String), PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = name(user, groups);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        validity(&mut params, 3650);
        let cert = params.signed_by(&key, issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Issue a client certificate for `user` in `groups`, signed by the cluster CA.
    /// Returns (certificate PEM, key PEM).
    pub fn issue_client(&self, user: &str, groups: &[&str]) -> Result<(String, String), PkiError> {
        let ca_key_pem = std::fs::read_to_string(&self.ca_key).map_err(io(&self.ca_key))?;
        let ca_cert_pem = std::fs::read_to_string(&self.ca_cert).map_err(io(&self.ca_cert))?;
        let issuer = Issuer::from_ca_cert_pem(&ca_cert_pem, KeyPair::from_pem(&ca_key_pem)?)?;
        self.client_cert(&issuer, user, groups)
    }

    /// Write a kubeconfig for the admin user pointing at `server_url`.
    pub fn write_admin_kubeconfig(&self, path: &Path, server_url: &str) -> Result<(), PkiError> {
        use base64::Engine;
        let b64 = |p: &Path| -> Result<String, PkiError> {
            let bytes = std::fs::read(p).map_err(io(p))?;
            Ok(base64::engine::general_purpose::STANDARD.encode(bytes))
        };
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: flotilla\n  cluster:\n    server: {server_url}\n    certificate-authority-data: {ca}\ncontexts:\n- name: flotilla\n  context:\n    cluster: flotilla\n    user: admin\n    namespace: default\ncurrent-context: flotilla\npreferences: {{}}\nusers:\n- name: admin\n  user:\n    client-certificate-data: {cert}\n    client-key-data: {key}\n",
            ca = b64(&self.ca_cert)?,
            cert = b64(&self.admin_cert)?,
            key = b64(&self.admin_key)?,
        );
        write_private(path, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_and_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::at(dir.path());
        pki.ensure(&["example.test".into()]).unwrap();
        let ca1 = std::fs::read(&pki.ca_cert).unwrap();
        let admin1 = std::fs::read(&pki.admin_cert).unwrap();
        pki.ensure(&[]).unwrap();
        assert_eq!(ca1, std::fs::read(&pki.ca_cert).unwrap());
        assert_eq!(admin1, std::fs::read(&pki.admin_cert).unwrap());
        assert!(pki.kubelet_client_cert.exists() && pki.kubelet_client_key.exists());
        let sa1 = std::fs::read(&pki.sa_key).unwrap();
        pki.ensure(&[]).unwrap();
        assert_eq!(sa1, std::fs::read(&pki.sa_key).unwrap());
        assert!(
            std::fs::read_to_string(&pki.sa_pub)
                .unwrap()
                .contains("PUBLIC KEY")
        );
        let kc = dir.path().join("admin.kubeconfig");
        pki.write_admin_kubeconfig(&kc, "https://127.0.0.1:6443")
            .unwrap();
        let text = std::fs::read_to_string(&kc).unwrap();
        assert!(text.contains("client-certificate-data"));
        // admin certificate carries the system:masters group as O
        let pem = std::fs::read_to_string(&pki.admin_cert).unwrap();
        let der = rustls_pemfile::certs(&mut pem.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let org = cert
            .subject()
            .iter_organization()
            .next()
            .unwrap()
            .as_str()
            .unwrap();
        assert_eq!(org, "system:masters");
    }

    #[test]
    fn serving_cert_is_reissued_for_new_names() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::at(dir.path());
        pki.ensure(&["0.0.0.0".into()]).unwrap();
        let first = std::fs::read(&pki.serving_cert).unwrap();
        assert!(pki.serving_cert_covers(&["127.0.0.1".into(), "localhost".into()]));
        assert!(!pki.serving_cert_covers(&["10.201.0.1".into()]));
        // Same names: kept.
        pki.ensure(&[]).unwrap();
        assert_eq!(first, std::fs::read(&pki.serving_cert).unwrap());
        // A new --tls-san: re-issued by the same CA, with the new names.
        let ca = std::fs::read(&pki.ca_cert).unwrap();
        pki.ensure(&["10.201.0.1".into(), "node.example".into()])
            .unwrap();
        assert_ne!(first, std::fs::read(&pki.serving_cert).unwrap());
        assert_eq!(ca, std::fs::read(&pki.ca_cert).unwrap());
        assert!(pki.serving_cert_covers(&["10.201.0.1".into(), "NODE.example".into()]));
        assert!(!pki.serving_cert_covers(&["10.201.0.2".into()]));
    }
}

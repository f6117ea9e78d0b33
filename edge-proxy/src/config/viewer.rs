//! The viewer side of the contract: the HTTPS listener (certificates chosen by SNI, minimum TLS
//! version, HTTP/2 by ALPN) and the viewer protocol policy (CloudFront's `ViewerProtocolPolicy`).

use serde::{Deserialize, Serialize};

use super::ConfigError;

/// The HTTPS listener, beside the plain one. Certificates are PEM files (a mounted Kubernetes
/// TLS Secret: `tls.crt`, `tls.key`); the edge watches them and swaps in new ones without
/// dropping connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsConfig {
    pub listen: String,
    /// The first certificate whose names match the SNI wins; the first one serves viewers that
    /// send no SNI or an unknown name.
    pub certificates: Vec<TlsCertificate>,
    /// CloudFront's security policy floor: `TLSv1.2_2021` is `"1.2"`.
    #[serde(default)]
    pub min_version: TlsVersion,
    /// Offer `h2` in ALPN (HTTP/2 over TLS); HTTP/1.1 is always offered.
    #[serde(default = "default_true")]
    pub http2: bool,
    /// The HTTPS port viewers reach this listener on (a Service may map 443 to `listen`),
    /// named in `redirect-to-https` answers; 443 is left out of the URL.
    #[serde(default = "default_public_port")]
    pub public_port: u16,
}

fn default_public_port() -> u16 {
    443
}

fn default_true() -> bool {
    true
}

/// One certificate chain and its private key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsCertificate {
    pub cert: String,
    pub key: String,
}

/// The lowest TLS version the HTTPS listener accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum TlsVersion {
    #[default]
    #[serde(rename = "1.2")]
    V1_2,
    #[serde(rename = "1.3")]
    V1_3,
}

impl std::str::FromStr for TlsVersion {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "1.2" => Ok(TlsVersion::V1_2),
            "1.3" => Ok(TlsVersion::V1_3),
            other => Err(format!("{other:?} is not a TLS version (1.2 or 1.3)")),
        }
    }
}

/// What a viewer's protocol may be (CloudFront's names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ViewerProtocolPolicy {
    /// HTTP and HTTPS both answered.
    #[default]
    AllowAll,
    /// HTTP gets `301` to the same URL over HTTPS.
    RedirectToHttps,
    /// HTTP gets `403`.
    HttpsOnly,
}

impl ViewerProtocolPolicy {
    pub fn is_default(&self) -> bool {
        *self == ViewerProtocolPolicy::AllowAll
    }
}

impl std::str::FromStr for ViewerProtocolPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "allow-all" => Ok(ViewerProtocolPolicy::AllowAll),
            "redirect-to-https" => Ok(ViewerProtocolPolicy::RedirectToHttps),
            "https-only" => Ok(ViewerProtocolPolicy::HttpsOnly),
            other => Err(format!(
                "{other:?} is not a viewer protocol policy (allow-all, redirect-to-https, https-only)"
            )),
        }
    }
}

impl TlsConfig {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        super::validate_socket_addr("server.tls.listen", &self.listen)?;
        if self.certificates.is_empty() {
            return Err(ConfigError::new(
                "server.tls.certificates",
                "at least one certificate is needed",
            ));
        }
        for (i, c) in self.certificates.iter().enumerate() {
            for (name, path) in [("cert", &c.cert), ("key", &c.key)] {
                if path.is_empty() {
                    return Err(ConfigError::new(
                        format!("server.tls.certificates[{i}].{name}"),
                        "must be a file path",
                    ));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_as_cloudfront_spells_them() {
        assert_eq!(
            "redirect-to-https".parse::<ViewerProtocolPolicy>(),
            Ok(ViewerProtocolPolicy::RedirectToHttps)
        );
        assert!("https".parse::<ViewerProtocolPolicy>().is_err());
        assert_eq!("1.3".parse::<TlsVersion>(), Ok(TlsVersion::V1_3));
        assert!("1.1".parse::<TlsVersion>().is_err());
        let v: TlsConfig = serde_yaml::from_str(
            "listen: 127.0.0.1:8443\ncertificates: [{cert: a.pem, key: a.key}]\nminVersion: '1.3'\n",
        )
        .expect("parse");
        assert_eq!(v.min_version, TlsVersion::V1_3);
        assert!(v.http2);
    }
}

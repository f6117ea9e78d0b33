//! Security flags of `kubefront-edge` (flattened into its command line; each also reads
//! `KUBEFRONT_<FLAG>`). Applied over the config file's `security` section.

use clap::{ArgAction, Args};

use crate::config::security::{CorsConfig, HstsConfig, KeyGroup, SignedPath, TrustedKey};
use crate::config::{Dur, EdgeConfig};

/// Key group that `--trusted-key` flags add to.
pub const CLI_KEY_GROUP: &str = "cli";

/// `ID=FILE` for `--trusted-key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFlag {
    pub id: String,
    pub file: String,
}

fn parse_key_flag(s: &str) -> Result<KeyFlag, String> {
    match s.split_once('=') {
        Some((id, file)) if !id.is_empty() && !file.is_empty() => Ok(KeyFlag {
            id: id.to_string(),
            file: file.to_string(),
        }),
        _ => Err(format!(
            "{s:?}: expected ID=FILE (a Key-Pair-Id and a public key PEM file)"
        )),
    }
}

#[derive(Debug, Clone, Default, Args)]
pub struct SecurityArgs {
    /// Trusted public key for signed URLs/cookies as ID=FILE (PEM); repeatable. Keys go to key
    /// group "cli".
    #[arg(long = "trusted-key", env = "KUBEFRONT_TRUSTED_KEY", value_parser = parse_key_flag,
          value_delimiter = ',', action = ArgAction::Append)]
    pub trusted_keys: Vec<KeyFlag>,
    /// Path pattern (e.g. "/private/*", or "*" for everything) that requires a signed URL or
    /// cookies from any trusted key; repeatable, checked after the config file's patterns.
    #[arg(long = "signed-paths", env = "KUBEFRONT_SIGNED_PATHS", value_delimiter = ',',
          action = ArgAction::Append)]
    pub signed_paths: Vec<String>,
    /// CORS: allowed origin (`https://app.example.com` or `*`); repeatable. Enables CORS.
    #[arg(long = "cors-allow-origin", env = "KUBEFRONT_CORS_ALLOW_ORIGIN", value_delimiter = ',',
          action = ArgAction::Append)]
    pub cors_allow_origins: Vec<String>,
    /// CORS: allowed methods [default: GET,HEAD].
    #[arg(
        long = "cors-allow-methods",
        env = "KUBEFRONT_CORS_ALLOW_METHODS",
        value_delimiter = ','
    )]
    pub cors_allow_methods: Vec<String>,
    /// CORS: allowed request headers (preflight).
    #[arg(
        long = "cors-allow-headers",
        env = "KUBEFRONT_CORS_ALLOW_HEADERS",
        value_delimiter = ','
    )]
    pub cors_allow_headers: Vec<String>,
    /// CORS: response headers exposed to scripts.
    #[arg(
        long = "cors-expose-headers",
        env = "KUBEFRONT_CORS_EXPOSE_HEADERS",
        value_delimiter = ','
    )]
    pub cors_expose_headers: Vec<String>,
    /// CORS: preflight cache time (Access-Control-Max-Age), e.g. 10m.
    #[arg(long = "cors-max-age", env = "KUBEFRONT_CORS_MAX_AGE")]
    pub cors_max_age: Option<Dur>,
    /// CORS: Access-Control-Allow-Credentials: true.
    #[arg(long = "cors-allow-credentials", env = "KUBEFRONT_CORS_ALLOW_CREDENTIALS",
          num_args = 0..=1, default_missing_value = "true")]
    pub cors_allow_credentials: Option<bool>,
    /// Strict-Transport-Security max-age, e.g. 365d (enables HSTS).
    #[arg(long = "hsts-max-age", env = "KUBEFRONT_HSTS_MAX_AGE")]
    pub hsts_max_age: Option<Dur>,
    /// HSTS includeSubDomains.
    #[arg(long = "hsts-include-subdomains", env = "KUBEFRONT_HSTS_INCLUDE_SUBDOMAINS",
          num_args = 0..=1, default_missing_value = "true")]
    pub hsts_include_subdomains: Option<bool>,
    /// HSTS preload.
    #[arg(long = "hsts-preload", env = "KUBEFRONT_HSTS_PRELOAD", num_args = 0..=1,
          default_missing_value = "true")]
    pub hsts_preload: Option<bool>,
    /// X-Content-Type-Options: nosniff.
    #[arg(long = "content-type-options", env = "KUBEFRONT_CONTENT_TYPE_OPTIONS", num_args = 0..=1,
          default_missing_value = "true")]
    pub content_type_options: Option<bool>,
    /// X-Frame-Options: DENY or SAMEORIGIN.
    #[arg(long = "frame-options", env = "KUBEFRONT_FRAME_OPTIONS")]
    pub frame_options: Option<String>,
    /// Referrer-Policy value, e.g. strict-origin-when-cross-origin.
    #[arg(long = "referrer-policy", env = "KUBEFRONT_REFERRER_POLICY")]
    pub referrer_policy: Option<String>,
    /// Longest request target (path + query) accepted; longer gets 414 [default: 8192].
    #[arg(long = "max-url-bytes", env = "KUBEFRONT_MAX_URL_BYTES")]
    pub max_url_bytes: Option<u32>,
    /// Largest request header section accepted; larger gets 431 [default: 20480].
    #[arg(long = "max-header-bytes", env = "KUBEFRONT_MAX_HEADER_BYTES")]
    pub max_header_bytes: Option<u32>,
    /// Time a viewer has to send its request head [default: 10s].
    #[arg(long = "header-read-timeout", env = "KUBEFRONT_HEADER_READ_TIMEOUT")]
    pub header_read_timeout: Option<Dur>,
    /// Open viewer connections at most; more wait to be accepted [default: 10000].
    #[arg(long = "max-connections", env = "KUBEFRONT_MAX_CONNECTIONS")]
    pub max_connections: Option<u32>,
    /// Header carrying the viewer IP set by a trusted load balancer (e.g. X-Forwarded-For).
    #[arg(long = "client-ip-header", env = "KUBEFRONT_CLIENT_IP_HEADER")]
    pub client_ip_header: Option<String>,
    /// Trusted proxies that appended to --client-ip-header [default: 1].
    #[arg(long = "trusted-proxy-hops", env = "KUBEFRONT_TRUSTED_PROXY_HOPS")]
    pub trusted_proxy_hops: Option<u32>,
}

impl SecurityArgs {
    /// Applies the given flags over `cfg.security` (validation happens with the whole config).
    pub fn apply(&self, cfg: &mut EdgeConfig) {
        let sec = &mut cfg.security;
        if !self.trusted_keys.is_empty() {
            let keys = self.trusted_keys.iter().map(|k| TrustedKey {
                id: k.id.clone(),
                public_key_pem: None,
                public_key_file: Some(k.file.clone()),
            });
            match sec
                .trusted_key_groups
                .iter_mut()
                .find(|g| g.name == CLI_KEY_GROUP)
            {
                Some(g) => g.keys.extend(keys),
                None => sec.trusted_key_groups.push(KeyGroup {
                    name: CLI_KEY_GROUP.into(),
                    keys: keys.collect(),
                }),
            }
        }
        let all_groups: Vec<String> = sec
            .trusted_key_groups
            .iter()
            .map(|g| g.name.clone())
            .collect();
        for p in &self.signed_paths {
            sec.signed_paths.push(SignedPath {
                path_pattern: p.clone(),
                key_groups: all_groups.clone(),
                public: false,
            });
        }
        let rh = &mut sec.response_headers;
        if !self.cors_allow_origins.is_empty() {
            let cors = rh.cors.get_or_insert_with(|| CorsConfig {
                allow_origins: Vec::new(),
                allow_methods: vec!["GET".into(), "HEAD".into()],
                allow_headers: Vec::new(),
                expose_headers: Vec::new(),
                max_age: None,
                allow_credentials: false,
            });
            cors.allow_origins.clone_from(&self.cors_allow_origins);
        }
        if let Some(cors) = rh.cors.as_mut() {
            if !self.cors_allow_methods.is_empty() {
                cors.allow_methods.clone_from(&self.cors_allow_methods);
            }
            if !self.cors_allow_headers.is_empty() {
                cors.allow_headers.clone_from(&self.cors_allow_headers);
            }
            if !self.cors_expose_headers.is_empty() {
                cors.expose_headers.clone_from(&self.cors_expose_headers);
            }
            if self.cors_max_age.is_some() {
                cors.max_age = self.cors_max_age;
            }
            if let Some(c) = self.cors_allow_credentials {
                cors.allow_credentials = c;
            }
        }
        if let Some(max_age) = self.hsts_max_age {
            let h = rh.strict_transport_security.get_or_insert(HstsConfig {
                max_age,
                include_subdomains: false,
                preload: false,
            });
            h.max_age = max_age;
        }
        if let Some(h) = rh.strict_transport_security.as_mut() {
            if let Some(v) = self.hsts_include_subdomains {
                h.include_subdomains = v;
            }
            if let Some(v) = self.hsts_preload {
                h.preload = v;
            }
        }
        if let Some(v) = self.content_type_options {
            rh.content_type_options = v;
        }
        if self.frame_options.is_some() {
            rh.frame_options.clone_from(&self.frame_options);
        }
        if self.referrer_policy.is_some() {
            rh.referrer_policy.clone_from(&self.referrer_policy);
        }
        let l = &mut sec.limits;
        if let Some(v) = self.max_url_bytes {
            l.max_url_bytes = v;
        }
        if let Some(v) = self.max_header_bytes {
            l.max_header_bytes = v;
        }
        if let Some(v) = self.header_read_timeout {
            l.header_read_timeout = v;
        }
        if let Some(v) = self.max_connections {
            l.max_connections = v;
        }
        if self.client_ip_header.is_some() {
            sec.client_ip.header.clone_from(&self.client_ip_header);
        }
        if let Some(v) = self.trusted_proxy_hops {
            sec.client_ip.trusted_hops = v;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cmd {
        #[command(flatten)]
        security: SecurityArgs,
    }

    fn applied(args: &[&str], file: &str) -> EdgeConfig {
        let cmd =
            Cmd::try_parse_from(std::iter::once("kubefront-edge").chain(args.iter().copied()))
                .expect("parse");
        let mut cfg = EdgeConfig::from_yaml(file).expect("yaml");
        cmd.security.apply(&mut cfg);
        cfg
    }

    #[test]
    fn keys_and_signed_paths() {
        let cfg = applied(
            &["--trusted-key", "K1=/keys/k1.pem", "--trusted-key", "K2=/keys/k2.pem", "--signed-paths", "/private/*"],
            "origin: {s3: {bucket: assets}}\nsecurity: {trustedKeyGroups: [{name: file, keys: [{id: KF, publicKeyFile: /f.pem}]}]}",
        );
        cfg.validate().expect("valid");
        let groups = &cfg.security.trusted_key_groups;
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[1].name, "cli");
        assert_eq!(
            groups[1].keys[1].public_key_file.as_deref(),
            Some("/keys/k2.pem")
        );
        assert_eq!(cfg.security.signed_paths[0].key_groups, ["file", "cli"]);
        assert!(Cmd::try_parse_from(["x", "--trusted-key", "nofile"]).is_err());
        // Signed paths without any key are a config error naming the field.
        let cfg = applied(&["--signed-paths", "*"], "origin: {s3: {bucket: assets}}");
        assert_eq!(
            cfg.validate().expect_err("no keys").field,
            "security.signedPaths[0].keyGroups"
        );
    }

    #[test]
    fn headers_and_limits() {
        let cfg = applied(
            &[
                "--cors-allow-origin",
                "https://a.example",
                "--cors-allow-origin",
                "https://b.example",
                "--cors-allow-headers",
                "Range,X-Id",
                "--cors-max-age",
                "10m",
                "--hsts-max-age",
                "365d",
                "--hsts-include-subdomains",
                "--content-type-options",
                "--frame-options",
                "SAMEORIGIN",
                "--referrer-policy",
                "no-referrer",
                "--max-url-bytes",
                "4096",
                "--header-read-timeout",
                "2s",
                "--max-connections",
                "64",
                "--client-ip-header",
                "X-Forwarded-For",
            ],
            "origin: {s3: {bucket: assets}}",
        );
        cfg.validate().expect("valid");
        let rh = &cfg.security.response_headers;
        let cors = rh.cors.as_ref().expect("cors");
        assert_eq!(
            cors.allow_origins,
            ["https://a.example", "https://b.example"]
        );
        assert_eq!(cors.allow_methods, ["GET", "HEAD"]);
        assert_eq!(cors.allow_headers, ["Range", "X-Id"]);
        assert_eq!(cors.max_age, Some(Dur::secs(600)));
        let hsts = rh.strict_transport_security.as_ref().expect("hsts");
        assert!(hsts.include_subdomains && !hsts.preload);
        assert!(rh.content_type_options);
        assert_eq!(cfg.security.limits.max_url_bytes, 4096);
        assert_eq!(cfg.security.limits.max_connections, 64);
        assert_eq!(
            cfg.security.client_ip.header.as_deref(),
            Some("X-Forwarded-For")
        );
        // Nothing given: nothing changes.
        let untouched = applied(&[], "origin: {s3: {bucket: assets}}");
        assert_eq!(
            untouched,
            EdgeConfig::from_yaml("origin: {s3: {bucket: assets}}").expect("yaml")
        );
    }
}

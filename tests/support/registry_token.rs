//! A token issuer for the registry's `auth: token` mode, and test certificates.
//!
//! The issuer is a tiny HTTP server on loopback: `GET /token?service=&scope=…` with Basic
//! credentials answers a JWT (ES256, the signing certificate in the `x5c` header) granting the
//! requested actions to known users; wrong credentials get 401; anonymous requests get a token
//! granting nothing. The OAuth2 form (`POST` with `grant_type=refresh_token`) is accepted for
//! the refresh tokens it was given. The registry trusts the signing certificate as its `rootcertbundle`.
//! Every request is recorded (scopes asked for, user, raw `Authorization`) for assertions.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, SanType,
};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};

/// The service name the registry and tokens agree on.
pub const SERVICE: &str = "kiln-test-registry";
/// The issuer name the registry trusts.
pub const ISSUER: &str = "kiln-test-issuer";

/// A token request the issuer received.
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// `scope` parameters, in order.
    pub scopes: Vec<String>,
    /// The authenticated user, if the credentials were right.
    pub user: Option<String>,
    /// The raw `Authorization` header.
    pub authorization: Option<String>,
    /// `GET` or `POST`.
    pub method: String,
}

/// The running issuer.
#[derive(Debug)]
pub struct TokenIssuer {
    /// The realm URL to configure in the registry.
    pub realm: String,
    /// The signing certificate (PEM), the registry's `rootcertbundle`.
    pub cert_pem: String,
    requests: Arc<Mutex<Vec<TokenRequest>>>,
}

struct Signer {
    key: EcdsaKeyPair,
    cert_der: Vec<u8>,
    users: Vec<(String, String)>,
    /// Refresh token → user.
    refresh_tokens: Vec<(String, String)>,
    /// Seconds from now to the JWT's `exp` (negative: already past, for registries that allow
    /// clock skew).
    ttl: i64,
    /// What the response's `expires_in` claims (a liar's value exercises server-side expiry).
    advertised: u64,
}

impl TokenIssuer {
    /// Starts an issuer for `users` whose tokens live `ttl` seconds.
    pub fn start(users: &[(&str, &str)], ttl: u64) -> Self {
        Self::new(users, &[], ttl as i64, ttl)
    }

    /// [`start`](Self::start), also accepting `(refresh token, user)` in the OAuth2 form.
    pub fn with_refresh_tokens(users: &[(&str, &str)], refresh: &[(&str, &str)], ttl: u64) -> Self {
        Self::new(users, refresh, ttl as i64, ttl)
    }

    /// The general form: tokens whose `exp` is `ttl` seconds from now, and whose response
    /// says they last `advertised` seconds.
    pub fn new(
        users: &[(&str, &str)],
        refresh: &[(&str, &str)],
        ttl: i64,
        advertised: u64,
    ) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "kiln test token signer");
        let cert = params.self_signed(&key).unwrap();
        let rng = SystemRandom::new();
        let signer = Arc::new(Signer {
            key: EcdsaKeyPair::from_pkcs8(
                &ECDSA_P256_SHA256_FIXED_SIGNING,
                &key.serialize_der(),
                &rng,
            )
            .unwrap(),
            cert_der: cert.der().to_vec(),
            users: users
                .iter()
                .map(|(u, p)| (u.to_string(), p.to_string()))
                .collect(),
            refresh_tokens: refresh
                .iter()
                .map(|(t, u)| (t.to_string(), u.to_string()))
                .collect(),
            ttl,
            advertised,
        });
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let realm = format!("http://{}/token", listener.local_addr().unwrap());
        let requests: Arc<Mutex<Vec<TokenRequest>>> = Arc::default();
        let log = requests.clone();
        thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let (signer, log) = (signer.clone(), log.clone());
                thread::spawn(move || serve(conn, &signer, &log));
            }
        });
        Self {
            realm,
            cert_pem: cert.pem(),
            requests,
        }
    }

    /// Every token request so far.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(mut conn: TcpStream, signer: &Signer, log: &Mutex<Vec<TokenRequest>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let header = |name: &str| {
        head.split("\r\n")
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
    };
    let length: usize = header("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
    let method = head.split(' ').next().unwrap_or_default().to_owned();
    let target = head.split(' ').nth(1).unwrap_or_default().to_owned();
    let authorization = header("authorization");
    let query = target.split_once('?').map(|(_, q)| q).unwrap_or_default();
    let form: Vec<(String, String)> = (if method == "POST" {
        body.as_str()
    } else {
        query
    })
    .split('&')
    .filter_map(|kv| kv.split_once('='))
    .map(|(k, v)| (k.to_owned(), percent_decode(&v.replace('+', " "))))
    .collect();
    let field = |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let (presented, user) = if method == "POST" {
        let token = field("refresh_token")
            .filter(|_| field("grant_type").as_deref() == Some("refresh_token"));
        let user = token.as_ref().and_then(|t| {
            signer
                .refresh_tokens
                .iter()
                .find(|(r, _)| r == t)
                .map(|(_, u)| u.clone())
        });
        (token, user)
    } else {
        let presented = authorization
            .as_deref()
            .and_then(|a| a.strip_prefix("Basic "))
            .and_then(|b| STANDARD.decode(b).ok())
            .and_then(|b| String::from_utf8(b).ok());
        let user = presented.as_deref().and_then(|p| {
            signer
                .users
                .iter()
                .find(|(u, pw)| p == format!("{u}:{pw}"))
                .map(|(u, _)| u.clone())
        });
        (presented, user)
    };
    let scopes: Vec<String> = if method == "POST" {
        field("scope")
            .map(|s| s.split(' ').map(str::to_owned).collect())
            .unwrap_or_default()
    } else {
        form.iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.clone())
            .collect()
    };
    log.lock().unwrap().push(TokenRequest {
        scopes: scopes.clone(),
        user: user.clone(),
        authorization: authorization.clone(),
        method,
    });
    let (status, body) = if presented.is_some() && user.is_none() {
        (
            "401 Unauthorized",
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"invalid credentials"}]}"#.to_owned(),
        )
    } else {
        let token = signer.token(user.as_deref(), if user.is_some() { &scopes } else { &[] });
        (
            "200 OK",
            format!(
                r#"{{"token":"{token}","access_token":"{token}","expires_in":{}}}"#,
                signer.advertised
            ),
        )
    };
    let _ = write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

impl Signer {
    /// A JWT granting `scopes` (`repository:<name>:<actions>`; the name may hold a colon).
    fn token(&self, user: Option<&str>, scopes: &[String]) -> String {
        let access: Vec<serde_json::Value> = scopes
            .iter()
            .filter_map(|s| {
                let (kind, rest) = s.split_once(':')?;
                let (name, actions) = rest.rsplit_once(':')?;
                Some(serde_json::json!({
                    "type": kind,
                    "name": name,
                    "actions": actions.split(',').collect::<Vec<_>>(),
                }))
            })
            .collect();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let header = serde_json::json!({
            "alg": "ES256",
            "typ": "JWT",
            "x5c": [STANDARD.encode(&self.cert_der)],
        });
        let claims = serde_json::json!({
            "iss": ISSUER,
            "sub": user.unwrap_or(""),
            "aud": SERVICE,
            "exp": now as i64 + self.ttl,
            "nbf": now - 10,
            "iat": now,
            "jti": format!("{now}-{}", access.len()),
            "access": access,
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig = self
            .key
            .sign(&SystemRandom::new(), input.as_bytes())
            .unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A test CA and a server certificate it signed for `localhost` and 127.0.0.1:
/// `(ca_pem, server_chain_pem, server_key_pem)`.
pub fn test_ca() -> (String, String, String) {
    let (ca, cert, key, _) = test_ca_with_client();
    (ca, cert, key)
}

/// [`test_ca`] and a client certificate the same CA signed (for mutual TLS):
/// `(ca_pem, server_chain_pem, server_key_pem, (client_cert_pem, client_key_pem))`.
pub fn test_ca_with_client() -> (String, String, String, (String, String)) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "kiln test CA");
    let ca = CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let cert = params.signed_by(&key, &ca).unwrap();
    let client_key = KeyPair::generate().unwrap();
    let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
    client
        .distinguished_name
        .push(DnType::CommonName, "kiln test client");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client.signed_by(&client_key, &ca).unwrap();
    (
        ca.pem(),
        cert.pem(),
        key.serialize_pem(),
        (client_cert.pem(), client_key.serialize_pem()),
    )
}

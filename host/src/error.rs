//! The request path's one error type: what happened ([`Kind`]), who caused it
//! ([`Side`]), whether another backend may be tried, and the underlying
//! `io::Error`, so that a log line names the cause
//! (`connect 127.0.0.1:3002: connection refused`) and a metric can count by
//! kind. Modelled on `pingora-error`'s type, source and retry, smaller.

use std::fmt;
use std::io;
use std::net::SocketAddr;

/// Who caused an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The client: silent, slow, malformed, gone.
    Client,
    /// A backend: refused, timed out, closed early.
    Backend,
    /// The strategy (never fatal: the fallback decides instead).
    Strategy,
    /// Switchyard itself.
    Internal,
}

impl Side {
    /// Stable lower-case name, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Client => "client",
            Side::Backend => "backend",
            Side::Strategy => "strategy",
            Side::Internal => "internal",
        }
    }
}

/// What went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The client sent nothing within the head timeout.
    ClientSilent,
    /// The client closed (or reset) before its head was complete.
    ClientClosed,
    /// An HTTP head did not arrive whole within the head timeout (`408`).
    HeadTimeout,
    /// An HTTP head over the size or header-count cap (`431`).
    HeadTooLarge,
    /// Bytes that start as HTTP but do not parse (`400`).
    HeadMalformed,
    /// A TLS ClientHello did not arrive whole within the head timeout.
    HelloTimeout,
    /// Neither HTTP nor TLS, and `opaque = "reject"`.
    OpaqueRejected,
    /// Not HTTP, and `mode = "http"` serves only HTTP (TLS counts when no
    /// certificate is configured to terminate it).
    NotHttp,
    /// Nothing eligible to route to (`503`).
    NoBackend,
    /// A backend connect failed.
    Connect,
    /// A backend connect took longer than `connect_timeout_ms`.
    ConnectTimeout,
    /// A backend closed or reset before its first response byte (`502`).
    ClosedBeforeResponse,
    /// A backend sent no response within the upstream header timeout after
    /// the client's last byte (`504`).
    ResponseTimeout,
    /// Reading from or writing to a client failed while forwarding.
    ClientIo,
    /// Reading from or writing to a backend failed while forwarding.
    BackendIo,
    /// Nothing moved either way for `idle_timeout_ms`.
    IdleTimeout,
    /// Anything else, a bug or resource exhaustion.
    Internal,
}

impl Kind {
    /// Every kind, in declaration order (`kind as usize` indexes it).
    pub const ALL: [Kind; 17] = [
        Kind::ClientSilent,
        Kind::ClientClosed,
        Kind::HeadTimeout,
        Kind::HeadTooLarge,
        Kind::HeadMalformed,
        Kind::HelloTimeout,
        Kind::OpaqueRejected,
        Kind::NotHttp,
        Kind::NoBackend,
        Kind::Connect,
        Kind::ConnectTimeout,
        Kind::ClosedBeforeResponse,
        Kind::ResponseTimeout,
        Kind::ClientIo,
        Kind::BackendIo,
        Kind::IdleTimeout,
        Kind::Internal,
    ];

    /// Stable snake_case name, for logs and metrics.
    pub fn as_str(self) -> &'static str {
        const _: () = {
            let mut k = 0;
            while k < Kind::ALL.len() {
                assert!(
                    Kind::ALL[k] as usize == k,
                    "Kind::ALL is in declaration order"
                );
                k += 1;
            }
        };
        match self {
            Kind::ClientSilent => "client_silent",
            Kind::ClientClosed => "client_closed",
            Kind::HeadTimeout => "head_timeout",
            Kind::HeadTooLarge => "head_too_large",
            Kind::HeadMalformed => "head_malformed",
            Kind::HelloTimeout => "hello_timeout",
            Kind::OpaqueRejected => "opaque_rejected",
            Kind::NotHttp => "not_http",
            Kind::NoBackend => "no_backend",
            Kind::Connect => "connect",
            Kind::ConnectTimeout => "connect_timeout",
            Kind::ClosedBeforeResponse => "closed_before_response",
            Kind::ResponseTimeout => "response_timeout",
            Kind::ClientIo => "client_io",
            Kind::BackendIo => "backend_io",
            Kind::IdleTimeout => "idle_timeout",
            Kind::Internal => "internal",
        }
    }

    /// Who causes this kind of error.
    pub fn side(self) -> Side {
        match self {
            Kind::ClientSilent
            | Kind::ClientClosed
            | Kind::HeadTimeout
            | Kind::HeadTooLarge
            | Kind::HeadMalformed
            | Kind::HelloTimeout
            | Kind::OpaqueRejected
            | Kind::NotHttp
            | Kind::ClientIo
            | Kind::IdleTimeout => Side::Client,
            Kind::NoBackend
            | Kind::Connect
            | Kind::ConnectTimeout
            | Kind::ClosedBeforeResponse
            | Kind::ResponseTimeout
            | Kind::BackendIo => Side::Backend,
            Kind::Internal => Side::Internal,
        }
    }

    /// What a log line says before the address and the cause.
    fn describe(self) -> &'static str {
        match self {
            Kind::ClientSilent => "client sent nothing within the head timeout",
            Kind::ClientClosed => "client closed before its request head was complete",
            Kind::HeadTimeout => "request head not complete within the head timeout",
            Kind::HeadTooLarge => "request head over the size or header-count cap",
            Kind::HeadMalformed => "malformed request head",
            Kind::HelloTimeout => "TLS ClientHello not complete within the head timeout",
            Kind::OpaqueRejected => "neither HTTP nor TLS, and opaque connections are rejected",
            Kind::NotHttp => {
                "not HTTP, and mode http serves only HTTP (TLS needs --tls-cert to be served)"
            }
            Kind::NoBackend => "no backend to route to",
            Kind::Connect => "connect",
            Kind::ConnectTimeout => "connect timed out",
            Kind::ClosedBeforeResponse => "closed before responding",
            Kind::ResponseTimeout => "no response within the upstream header timeout from",
            Kind::ClientIo => "client",
            Kind::BackendIo => "backend",
            Kind::IdleTimeout => "idle timeout",
            Kind::Internal => "internal error",
        }
    }
}

/// An error on the request path.
#[derive(Debug)]
pub struct Error {
    kind: Kind,
    retry: bool,
    addr: Option<SocketAddr>,
    cause: Option<io::Error>,
}

impl Error {
    /// An error of `kind`, not retryable, with no address or cause.
    pub fn new(kind: Kind) -> Error {
        Error {
            kind,
            retry: false,
            addr: None,
            cause: None,
        }
    }

    /// The same, caused by `cause`.
    pub fn because(mut self, cause: io::Error) -> Error {
        self.cause = Some(cause);
        self
    }

    /// The same, at the backend (or peer) `addr`.
    pub fn at(mut self, addr: SocketAddr) -> Error {
        self.addr = Some(addr);
        self
    }

    /// The same, marked as safe to try again on another backend.
    pub fn retryable(mut self, retry: bool) -> Error {
        self.retry = retry;
        self
    }

    /// What happened.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Who caused it.
    pub fn side(&self) -> Side {
        self.kind.side()
    }

    /// True if another backend may be tried.
    pub fn is_retryable(&self) -> bool {
        self.retry
    }

    /// The underlying I/O error, if any.
    pub fn cause(&self) -> Option<&io::Error> {
        self.cause.as_ref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.kind, self.addr) {
            // "backend 127.0.0.1:3002 closed before responding"
            (Kind::ClosedBeforeResponse, Some(a)) => {
                write!(f, "backend {a} closed before responding")?
            }
            (k, Some(a)) => write!(f, "{} {a}", k.describe())?,
            (k, None) => f.write_str(k.describe())?,
        }
        if let Some(c) = &self.cause {
            write!(f, ": {c}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // The cause is already in the message; a source would print it twice.
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_cause() {
        let addr: SocketAddr = "127.0.0.1:3002".parse().unwrap();
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let e = Error::new(Kind::Connect)
            .at(addr)
            .because(refused)
            .retryable(true);
        assert_eq!(e.to_string(), "connect 127.0.0.1:3002: connection refused");
        assert!(e.is_retryable());
        assert_eq!(e.side(), Side::Backend);
        assert_eq!(
            Error::new(Kind::ClosedBeforeResponse).at(addr).to_string(),
            "backend 127.0.0.1:3002 closed before responding"
        );
        assert_eq!(Error::new(Kind::HeadTooLarge).side(), Side::Client);
    }
}

//! Exit codes and the failure every command ends with.

use std::fmt;

/// What `ema` exits with. The numbers are stable: scripts may test them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Exit {
    /// 0: the command did what it was asked.
    Ok,
    /// 1: anything else: the tool reported an error, the MCP server answered with a protocol
    /// error.
    Failed,
    /// 2: usage: a bad flag or argument, an unreadable or invalid config file, ID token or
    /// JWKS file, a URL the fetch policy refuses.
    Usage,
    /// 3: discovery: the protected-resource or authorization-server metadata is missing or
    /// wrong (`ema discover` says what and how to fix it).
    Discovery,
    /// 4: refused: the IdP, the authorization server or the MCP server said no, or answered
    /// with something unusable.
    Refused,
    /// 5: network: a server could not be reached or did not answer in time.
    Network,
    /// 6: `ema verify`: the token did not verify (signature, header, time, `iss` or `aud`).
    Invalid,
}

impl Exit {
    /// The process exit status.
    pub const fn code(self) -> u8 {
        match self {
            Self::Ok => 0,
            Self::Failed => 1,
            Self::Usage => 2,
            Self::Discovery => 3,
            Self::Refused => 4,
            Self::Network => 5,
            Self::Invalid => 6,
        }
    }
}

/// Why a command stopped: one sentence and its exit code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    /// The exit code.
    pub exit: Exit,
    /// The sentence printed on stderr after `ema: `.
    pub message: String,
}

impl Failure {
    /// A failure with `exit` and `message`.
    pub fn new(exit: Exit, message: impl fmt::Display) -> Self {
        Self {
            exit,
            message: message.to_string(),
        }
    }

    /// Exit 2.
    pub fn usage(message: impl fmt::Display) -> Self {
        Self::new(Exit::Usage, message)
    }
}

/// An error and its sources, `: `-separated, without repeating a source already in the text.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

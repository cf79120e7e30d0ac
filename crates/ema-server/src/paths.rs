//! Route paths derived from configured URLs.

use url::Url;

/// The path of a URL string, `/` when it does not parse.
pub(crate) fn url_path(url: &str) -> String {
    Url::parse(url).map_or_else(|_| "/".to_owned(), |u| u.path().to_owned())
}

/// The path of a URL derived from `base` by `derive` (e.g. a well-known URL of an issuer).
pub(crate) fn path_of(base: &str, derive: fn(&Url) -> Url) -> String {
    Url::parse(base).map_or_else(|_| "/".to_owned(), |u| derive(&u).path().to_owned())
}

//! Listing an S3 bucket (or a prefix of it), shared by `mcli_mirror`,
//! `s3_archive`, `s3_upload` and the off-site steps.
//!
//! Listing is done here (ListObjectsV2 signed by object_store's SigV4 signer)
//! rather than through `ObjectStore::list`, because object_store refuses a whole
//! listing page when one key is not a valid object_store path (a key holding
//! `..`, say); we need to see such keys to refuse and report them one by one.

use std::time::{Duration, UNIX_EPOCH};

use serde::Deserialize;
use url::Url;

use crate::runtime::error::{ErrorKind, StepError, StepFailure};
use crate::s3::alias::{S3Endpoint, S3Location};

/// Attempts for each listing page after the first (the first fails fast: it is
/// the reachability check).
const LIST_ATTEMPTS: u32 = 5;
/// How long a listing request may take to connect: the reachability check
/// fails after this on an endpoint that does not answer.
pub const LIST_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one listing page may take in all (1,000 keys).
pub const LIST_PAGE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why listing a bucket failed.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// No connection to the endpoint.
    #[error("cannot reach {endpoint}{hint}")]
    Unreachable {
        /// The alias and URL.
        endpoint: String,
        /// Advice, or empty.
        hint: &'static str,
        /// The connection error.
        source: reqwest::Error,
    },
    /// The endpoint refused the credentials.
    #[error("{endpoint} rejected the credentials from {origin}: {code}: {message}")]
    Credentials {
        /// The alias and URL.
        endpoint: String,
        /// Where the credentials came from.
        origin: String,
        /// The S3 error code, e.g. `SignatureDoesNotMatch`.
        code: String,
        /// The server's message.
        message: String,
    },
    /// The credentials are valid but may not list the bucket.
    #[error("{endpoint} denied listing bucket `{bucket}`: {code}: {message}")]
    AccessDenied {
        /// The alias and URL.
        endpoint: String,
        /// The bucket.
        bucket: String,
        /// The S3 error code.
        code: String,
        /// The server's message.
        message: String,
    },
    /// The bucket does not exist.
    #[error("bucket `{bucket}` does not exist on {endpoint}")]
    BucketMissing {
        /// The alias and URL.
        endpoint: String,
        /// The bucket.
        bucket: String,
    },
    /// Any other S3 error answer.
    #[error("listing bucket `{bucket}` on {endpoint} failed: HTTP {status}: {code}: {message}")]
    S3 {
        /// The alias and URL.
        endpoint: String,
        /// The bucket.
        bucket: String,
        /// The HTTP status.
        status: u16,
        /// The S3 error code, or `no S3 error code`.
        code: String,
        /// The server's message.
        message: String,
    },
    /// The listing answer is not a ListObjectsV2 document.
    #[error("unexpected listing answer from {endpoint}: {reason}")]
    ListFormat {
        /// The alias and URL.
        endpoint: String,
        /// What is wrong.
        reason: String,
    },
}

impl StepFailure for ListError {
    fn error_kind(&self) -> ErrorKind {
        match self {
            ListError::Unreachable { .. } => ErrorKind::Unreachable,
            ListError::Credentials { .. } => ErrorKind::Credentials,
            ListError::AccessDenied { .. } => ErrorKind::AccessDenied,
            ListError::BucketMissing { .. } => ErrorKind::BucketMissing,
            ListError::S3 { .. } | ListError::ListFormat { .. } => ErrorKind::S3,
        }
    }
}

/// One object of the listing.
#[derive(Clone, Debug)]
pub struct ListedObject {
    /// The key (lossily decoded when `utf8` is false).
    pub key: String,
    /// False when the listed key is not valid UTF-8 (it cannot be requested by name).
    pub utf8: bool,
    /// The size in bytes.
    pub size: u64,
    /// Last-Modified, whole seconds since the epoch.
    pub modified: i64,
    /// The listed ETag when it has the form of a single-part one (32 hex
    /// digits, decoded): the MD5 of the content, unless the object is
    /// encrypted with SSE-KMS or SSE-C. `None` for a multipart ETag
    /// (`<hex>-N`) or none (16 bytes inline: no allocation per object).
    pub single_part_etag: Option<[u8; 16]>,
}

/// A ListObjectsV2 answer.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListBucketResult {
    #[serde(default)]
    contents: Vec<ListContents>,
    #[serde(default)]
    is_truncated: bool,
    #[serde(default)]
    next_continuation_token: Option<String>,
    #[serde(default)]
    encoding_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListContents {
    key: String,
    size: u64,
    last_modified: String,
    #[serde(default, rename = "ETag")]
    etag: Option<String>,
}

/// An S3 error answer.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct S3ErrorBody {
    code: Option<String>,
    message: Option<String>,
}

/// Why one listing request failed.
enum ListFailure {
    Connection(reqwest::Error),
    Status {
        status: u16,
        code: Option<String>,
        message: String,
    },
    Format(String),
}

impl ListFailure {
    /// Worth retrying on a page after the first.
    fn transient(&self) -> bool {
        match self {
            ListFailure::Connection(_) => true,
            ListFailure::Status { status, code, .. } => {
                *status >= 500
                    || *status == 429
                    || matches!(
                        code.as_deref(),
                        Some("SlowDown" | "InternalError" | "ServiceUnavailable")
                    )
            }
            ListFailure::Format(_) => false,
        }
    }

    fn into_error(self, endpoint: &S3Endpoint, bucket: &str) -> ListError {
        let name = endpoint.describe();
        match self {
            ListFailure::Connection(source) => ListError::Unreachable {
                endpoint: name,
                hint: if error_chain_mentions(&source, "certificate") {
                    " (a private certificate authority? put its certificate in certs/CAs/ of \
                     the MinIO-client config folder, or give ca_cert)"
                } else {
                    ""
                },
                source,
            },
            ListFailure::Format(reason) => ListError::ListFormat {
                endpoint: name,
                reason,
            },
            ListFailure::Status {
                status,
                code,
                message,
            } => match code.as_deref() {
                Some("NoSuchBucket") => ListError::BucketMissing {
                    endpoint: name,
                    bucket: bucket.to_string(),
                },
                Some(
                    code @ ("InvalidAccessKeyId"
                    | "SignatureDoesNotMatch"
                    | "InvalidToken"
                    | "ExpiredToken"
                    | "TokenRefreshRequired"
                    | "AuthorizationHeaderMalformed"
                    | "InvalidSecurity"
                    | "MissingSecurityHeader"),
                ) => ListError::Credentials {
                    endpoint: name,
                    origin: endpoint.source.to_string(),
                    code: code.to_string(),
                    message,
                },
                Some(code @ ("AccessDenied" | "AllAccessDisabled")) => ListError::AccessDenied {
                    endpoint: name,
                    bucket: bucket.to_string(),
                    code: code.to_string(),
                    message,
                },
                code => ListError::S3 {
                    endpoint: name,
                    bucket: bucket.to_string(),
                    status,
                    code: code.unwrap_or("no S3 error code").to_string(),
                    message,
                },
            },
        }
    }
}

/// True when `error` or one of its causes mentions `word`.
fn error_chain_mentions(error: &(dyn std::error::Error + 'static), word: &str) -> bool {
    let mut current = Some(error);
    while let Some(error) = current {
        if error.to_string().contains(word) {
            return true;
        }
        current = error.source();
    }
    false
}

/// Lists every object under the location's prefix. The first request is the
/// reachability check and is not retried; later pages are, on transient errors.
/// (`mcli_mirror` lists what to download; `s3_upload` lists before and after.)
pub async fn list_objects(
    http: &reqwest::Client,
    endpoint: &S3Endpoint,
    location: &S3Location,
) -> Result<Vec<ListedObject>, StepError> {
    let mut objects = Vec::new();
    for_each_object(http, endpoint, location, |object| objects.push(object)).await?;
    Ok(objects)
}

/// Lists every object under the location's prefix as [`list_objects`] does,
/// handing each to `each` as its page arrives, so that a caller keeping a
/// compact form of each object (`mcli_mirror`, `s3_archive`) never holds the
/// whole listing as well.
pub async fn for_each_object(
    http: &reqwest::Client,
    endpoint: &S3Endpoint,
    location: &S3Location,
    mut each: impl FnMut(ListedObject) + Send,
) -> Result<(), StepError> {
    let mut token: Option<String> = None;
    let mut first = true;
    loop {
        let page = fetch_page(http, endpoint, location, token.as_deref(), first).await?;
        first = false;
        let url_encoded = page
            .encoding_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("url"));
        for item in page.contents {
            each(listed_object(item, url_encoded, endpoint)?);
        }
        match (page.is_truncated, page.next_continuation_token) {
            (true, Some(next)) => token = Some(next),
            (true, None) => {
                return Err(ListError::ListFormat {
                    endpoint: endpoint.describe(),
                    reason: "a truncated page without NextContinuationToken".to_string(),
                }
                .into());
            }
            (false, _) => return Ok(()),
        }
    }
}

/// One listing page; retried on transient errors, with a growing pause,
/// unless it is the `first` (the reachability check fails at once).
async fn fetch_page(
    http: &reqwest::Client,
    endpoint: &S3Endpoint,
    location: &S3Location,
    token: Option<&str>,
    first: bool,
) -> Result<ListBucketResult, StepError> {
    let mut attempt = 1;
    loop {
        match list_page(http, endpoint, location, token).await? {
            Ok(page) => return Ok(page),
            Err(failure) if first || !failure.transient() || attempt >= LIST_ATTEMPTS => {
                return Err(failure.into_error(endpoint, &location.bucket).into());
            }
            Err(_) => {
                let pause = Duration::from_secs(1 << (attempt - 1));
                tracing::warn!(
                    "listing bucket `{}` on {} failed; retrying in {}s",
                    location.bucket,
                    endpoint.describe(),
                    pause.as_secs()
                );
                tokio::time::sleep(pause).await;
                attempt += 1;
            }
        }
    }
}

/// One entry of a page, its key decoded when the page is `url_encoded`.
fn listed_object(
    item: ListContents,
    url_encoded: bool,
    endpoint: &S3Endpoint,
) -> Result<ListedObject, StepError> {
    let (key, utf8) = if url_encoded {
        match decode_key(&item.key) {
            Ok(key) => (key, true),
            Err(lossy) => (lossy, false),
        }
    } else {
        (item.key, true)
    };
    let modified = parse_timestamp(&item.last_modified).ok_or_else(|| {
        StepError::from(ListError::ListFormat {
            endpoint: endpoint.describe(),
            reason: format!(
                "LastModified `{}` of `{}` is not a timestamp",
                item.last_modified,
                key.escape_debug()
            ),
        })
    })?;
    Ok(ListedObject {
        key,
        utf8,
        size: item.size,
        modified,
        single_part_etag: item.etag.as_deref().and_then(single_part_etag),
    })
}

/// A listed ETag (`"<32 hex>"`, quotes and a weak `W/` mark allowed), decoded
/// when it is single-part; `None` for a multipart one (`<hex>-N`) or anything else.
fn single_part_etag(etag: &str) -> Option<[u8; 16]> {
    let bare = etag.trim().trim_start_matches("W/").trim_matches('"');
    let mut md5 = [0u8; 16];
    hex::decode_to_slice(bare, &mut md5).ok()?;
    Some(md5)
}

/// Sends one ListObjectsV2 request. The outer error is for setup problems,
/// the inner one for what the server (or the network) answered.
async fn list_page(
    http: &reqwest::Client,
    endpoint: &S3Endpoint,
    location: &S3Location,
    token: Option<&str>,
) -> Result<Result<ListBucketResult, ListFailure>, StepError> {
    let mut url: Url = endpoint.bucket_url(&location.bucket);
    {
        let mut query = url.query_pairs_mut();
        query.append_pair("list-type", "2");
        // Keys come back percent-encoded, so any byte (even a NUL) survives the XML.
        query.append_pair("encoding-type", "url");
        if !location.prefix.is_empty() {
            query.append_pair("prefix", &location.prefix);
        }
        if let Some(token) = token {
            query.append_pair("continuation-token", token);
        }
    }
    let mut headers = reqwest::header::HeaderMap::new();
    endpoint.sign_headers(&reqwest::Method::GET, &url, &mut headers)?;
    let response = match http.get(url).headers(headers).send().await {
        Ok(response) => response,
        Err(e) => return Ok(Err(ListFailure::Connection(e))),
    };
    let status = response.status();
    let body = match response.text().await {
        Ok(body) => body,
        Err(e) => return Ok(Err(ListFailure::Connection(e))),
    };
    if !status.is_success() {
        let error: S3ErrorBody = quick_xml::de::from_str(&body).unwrap_or_default();
        return Ok(Err(ListFailure::Status {
            status: status.as_u16(),
            code: error.code,
            message: error.message.unwrap_or_else(|| {
                status
                    .canonical_reason()
                    .unwrap_or("no message")
                    .to_string()
            }),
        }));
    }
    Ok(quick_xml::de::from_str::<ListBucketResult>(&body)
        .map_err(|e| ListFailure::Format(format!("not a ListObjectsV2 document: {e}"))))
}

/// Decodes a key listed with `encoding-type=url` (`+` is a space, `%XX` a byte),
/// as the MinIO client does. `Err` holds a lossy decoding when the bytes are
/// not UTF-8.
fn decode_key(encoded: &str) -> Result<String, String> {
    let spaced = encoded.replace('+', " ");
    let decoded = percent_encoding::percent_decode_str(&spaced);
    match decoded.clone().decode_utf8() {
        Ok(key) => Ok(key.into_owned()),
        Err(_) => Err(decoded.decode_utf8_lossy().into_owned()),
    }
}

/// Whole seconds since the epoch of an ISO 8601 timestamp such as
/// `2026-11-26T08:05:03.123Z`.
fn parse_timestamp(text: &str) -> Option<i64> {
    let time = humantime::parse_rfc3339_weak(text.trim()).ok()?;
    Some(match time.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_secs() as i64,
        Err(before) => -(before.duration().as_secs_f64().ceil() as i64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_timestamps() {
        assert_eq!(parse_timestamp("1970-01-01T00:01:40.999Z"), Some(100));
        assert_eq!(parse_timestamp("2026-11-26T08:05:03Z"), Some(1_795_680_303));
        assert_eq!(parse_timestamp("yesterday"), None);
        assert_eq!(decode_key("a+b%2F%00c").unwrap(), "a b/\0c");
        assert_eq!(decode_key("bad%FF").unwrap_err(), "bad\u{FFFD}");
    }

    #[test]
    fn only_single_part_etags_are_kept() {
        let md5 = "9e107d9d372bb6826bd81d3542a419d6";
        let decoded = hex::decode(md5).unwrap();
        for listed in [
            format!("\"{md5}\""),
            md5.to_uppercase(),
            format!("W/\"{md5}\""),
        ] {
            assert_eq!(
                single_part_etag(&listed).map(Vec::from),
                Some(decoded.clone()),
                "{listed}"
            );
        }
        for other in [
            format!("\"{md5}-3\""),
            "\"\"".to_string(),
            "\"abc\"".to_string(),
            format!("{md5}00"),
        ] {
            assert_eq!(single_part_etag(&other), None, "{other}");
        }
    }

    #[test]
    fn list_result_parses() {
        let xml = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><Prefix></Prefix>
<KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys><EncodingType>url</EncodingType><IsTruncated>true</IsTruncated>
<Contents><Key>a%2Fb</Key><LastModified>2026-11-26T08:05:03.000Z</LastModified><ETag>&quot;x&quot;</ETag><Size>3</Size><StorageClass>STANDARD</StorageClass></Contents>
<Contents><Key>c</Key><LastModified>2026-11-26T08:05:03.000Z</LastModified><ETag>"y"</ETag><Size>0</Size></Contents>
<NextContinuationToken>tok</NextContinuationToken></ListBucketResult>"#;
        let page: ListBucketResult = quick_xml::de::from_str(xml).unwrap();
        assert_eq!(page.contents.len(), 2);
        assert!(page.is_truncated);
        assert_eq!(page.next_continuation_token.as_deref(), Some("tok"));
        assert_eq!(page.encoding_type.as_deref(), Some("url"));
        assert_eq!(page.contents[0].etag.as_deref(), Some("\"x\""));
        let error: S3ErrorBody = quick_xml::de::from_str(
            "<Error><Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message><BucketName>x</BucketName></Error>",
        )
        .unwrap();
        assert_eq!(error.code.as_deref(), Some("NoSuchBucket"));
    }
}

//! A caller inside the deployment's mesh: `curl` run where the caller is, so that a request
//! leaves from a real workload (through its sidecar, with the mesh's mTLS) without the harness
//! creating or changing anything there. In a pod the user names, by exec (kube's websocket
//! exec); or by a command the user gives that runs curl where the caller is (`ssh vm1 curl`,
//! `docker exec -i sleep curl`, or curl on this machine with `--connect-to`), for meshes
//! outside Kubernetes. The request's headers go to curl on stdin (`-H @-`), never on its
//! command line, where an audit log or a process list would show a token.

use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, AttachParams, ListParams};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::OnceCell;
use url::Url;

use super::{BrowserError, Page};
use crate::endpoints::{CallerRef, KubeAccess, PodRef};
use crate::redact::Redactor;

/// How long curl may take for one request, and the exec or command around it.
const CURL_MAX_TIME: Duration = Duration::from_secs(10);
const EXEC_TIMEOUT: Duration = Duration::from_secs(30);

/// One in-mesh caller: where its curl runs.
pub struct CurlCaller {
    place: Place,
    redactor: Redactor,
}

enum Place {
    Pod(Box<PodPlace>),
    Command(Vec<String>),
}

struct PodPlace {
    access: KubeAccess,
    pod: PodRef,
    client: OnceCell<kube::Client>,
    pod_name: OnceCell<String>,
}

/// What running curl gave: its exit code (or why it is unknown), its output and its errors.
struct Ran {
    exit: Result<i32, String>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl CurlCaller {
    /// A caller where `place` says; `access` reaches the cluster of a pod caller.
    pub fn new(place: &CallerRef, access: KubeAccess, redactor: Redactor) -> Self {
        let place = match place {
            CallerRef::Pod(pod) => Place::Pod(Box::new(PodPlace {
                access,
                pod: pod.clone(),
                client: OnceCell::new(),
                pod_name: OnceCell::new(),
            })),
            CallerRef::Command(command) => Place::Command(command.command.clone()),
        };
        Self { place, redactor }
    }

    /// Sends one request from where the caller is; redirects are not followed. A connection
    /// the server resets, closes or fails the TLS handshake on is [`BrowserError::NoResponse`],
    /// as for the harness's own clients; nothing listening, or a caller that cannot run, is an
    /// error.
    pub async fn send(
        &self,
        method: &Method,
        url: &Url,
        headers: &HeaderMap,
    ) -> Result<Page, BrowserError> {
        let failed = |detail: String| BrowserError::Request {
            method: method.to_string(),
            url: self.redactor.redact(url.as_str()),
            detail: self.redactor.redact(&detail),
        };
        let max_time = CURL_MAX_TIME.as_secs().to_string();
        let curl_args = [
            "-sS",
            "-i",
            "--max-time",
            &max_time,
            "--noproxy",
            "*",
            "-X",
            method.as_str(),
            "-H",
            "@-",
            "--",
            url.as_str(),
        ];
        let stdin = header_lines(headers);
        let (where_, ran) = match &self.place {
            Place::Pod(pod) => {
                let client = pod.client().await.map_err(failed)?;
                let name = pod.pod_name(client).await.map_err(failed)?;
                let where_ = format!("exec into pod {}/{name}", pod.pod.namespace);
                let ran = pod.exec(client, &name, &curl_args, &stdin, &where_).await;
                (where_, ran)
            }
            Place::Command(command) => {
                let where_ = format!("the caller's command `{}`", command.join(" "));
                let ran = run_command(command, &curl_args, &stdin, &where_).await;
                (where_, ran)
            }
        };
        let ran = ran.map_err(failed)?;
        let stderr = String::from_utf8_lossy(&ran.stderr).trim().to_string();
        match ran.exit {
            Ok(0) => {
                let (status, headers, body) = parse_curl_response(&ran.stdout).map_err(failed)?;
                Ok(Page {
                    url: url.clone(),
                    status,
                    headers,
                    body,
                })
            }
            Ok(code) => Err(curl_failure(
                code,
                &stderr,
                method,
                url,
                &self.redactor,
                &where_,
            )),
            Err(unknown) => Err(failed(format!(
                "{where_}: the command's outcome is unknown ({unknown})"
            ))),
        }
    }
}

/// Runs `command` with curl's arguments after it on this machine, the headers on its stdin;
/// killed if it outlives [`EXEC_TIMEOUT`].
async fn run_command(
    command: &[String],
    curl_args: &[&str],
    stdin: &str,
    where_: &str,
) -> Result<Ran, String> {
    let (program, args) = command
        .split_first()
        .ok_or_else(|| format!("{where_} is empty"))?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .args(curl_args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            format!(
                "could not start {where_}: {e}\nhow to fix: name a program on PATH (or its \
                 full path) in the environment file's mesh section"
            )
        })?;
    if let Some(mut input) = child.stdin.take() {
        input
            .write_all(stdin.as_bytes())
            .await
            .map_err(|e| format!("{where_}: writing the request headers: {e}"))?;
    }
    let output = tokio::time::timeout(EXEC_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| format!("{where_}: no answer within {EXEC_TIMEOUT:?}"))?
        .map_err(|e| format!("{where_}: {e}"))?;
    Ok(Ran {
        exit: output
            .status
            .code()
            .ok_or_else(|| format!("ended by a signal: {}", output.status)),
        stdout: output.stdout,
        stderr: output.stderr,
    })
}

impl PodPlace {
    async fn exec(
        &self,
        client: &kube::Client,
        name: &str,
        curl_args: &[&str],
        stdin: &str,
        where_: &str,
    ) -> Result<Ran, String> {
        let pods: Api<Pod> = Api::namespaced(client.clone(), &self.pod.namespace);
        let mut params = AttachParams::default()
            .stdin(true)
            .stdout(true)
            .stderr(true);
        if let Some(container) = &self.pod.container {
            params = params.container(container.clone());
        }
        let command: Vec<&str> = std::iter::once("curl")
            .chain(curl_args.iter().copied())
            .collect();
        let run = async {
            let mut attached = pods.exec(name, command, &params).await.map_err(|e| {
                format!(
                    "{where_} failed: {}\nhow to fix: check that the pod runs and that your \
                     context may create pods/exec in namespace {}",
                    describe_kube_error(&e),
                    self.pod.namespace
                )
            })?;
            let status = attached.take_status();
            if let Some(mut input) = attached.stdin() {
                input
                    .write_all(stdin.as_bytes())
                    .await
                    .map_err(|e| format!("{where_}: writing the request headers: {e}"))?;
                input
                    .shutdown()
                    .await
                    .map_err(|e| format!("{where_}: closing stdin: {e}"))?;
            }
            let mut stdout = Vec::new();
            let mut stderr = Vec::new();
            let (stdout_reader, stderr_reader) = (attached.stdout(), attached.stderr());
            let out = async {
                if let Some(mut reader) = stdout_reader {
                    let _ = reader.read_to_end(&mut stdout).await;
                }
            };
            let err = async {
                if let Some(mut reader) = stderr_reader {
                    let _ = reader.read_to_end(&mut stderr).await;
                }
            };
            tokio::join!(out, err);
            let status = match status {
                Some(status) => status.await,
                None => None,
            };
            let _ = attached.join().await;
            let exit = exit_code(status.as_ref()).ok_or_else(|| {
                status
                    .and_then(|s| s.message)
                    .unwrap_or_else(|| "no status from the API server".into())
            });
            Ok::<_, String>(Ran {
                exit,
                stdout,
                stderr,
            })
        };
        tokio::time::timeout(EXEC_TIMEOUT, run)
            .await
            .map_err(|_| format!("{where_}: no answer within {EXEC_TIMEOUT:?}"))?
    }

    async fn client(&self) -> Result<&kube::Client, String> {
        self.client
            .get_or_try_init(|| async {
                let kubeconfig = match &self.access.kubeconfig {
                    Some(path) => kube::config::Kubeconfig::read_from(path),
                    None => kube::config::Kubeconfig::read(),
                }
                .map_err(|e| {
                    format!(
                        "cannot read the kubeconfig{}: {e}\nhow to fix: set mesh.kubeconfig in \
                         the environment file, or KUBECONFIG",
                        self.access
                            .kubeconfig
                            .as_ref()
                            .map(|p| format!(" {}", p.display()))
                            .unwrap_or_default()
                    )
                })?;
                let options = kube::config::KubeConfigOptions {
                    context: self.access.context.clone(),
                    ..Default::default()
                };
                let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .map_err(|e| {
                        format!(
                            "context {} is not usable: {e}\nhow to fix: name a context of \
                             the kubeconfig in mesh.context (kubectl config get-contexts)",
                            self.access
                                .context
                                .as_deref()
                                .map_or("(the kubeconfig's current one)".into(), |c| format!(
                                    "{c:?}"
                                ))
                        )
                    })?;
                kube::Client::try_from(config)
                    .map_err(|e| format!("cannot build the Kubernetes client: {e}"))
            })
            .await
    }

    /// The pod named, or the first running pod (by name) the selector picks.
    async fn pod_name(&self, client: &kube::Client) -> Result<String, String> {
        self.pod_name
            .get_or_try_init(|| async {
                if let Some(pod) = &self.pod.pod {
                    return Ok(pod.clone());
                }
                let selector = self.pod.selector.as_deref().unwrap_or_default();
                let pods: Api<Pod> = Api::namespaced(client.clone(), &self.pod.namespace);
                let listed = pods
                    .list(&ListParams::default().labels(selector))
                    .await
                    .map_err(|e| {
                        format!(
                            "listing pods {selector:?} in namespace {}: {}",
                            self.pod.namespace,
                            describe_kube_error(&e)
                        )
                    })?;
                let mut running: Vec<String> = listed
                    .items
                    .iter()
                    .filter(|pod| {
                        pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
                    })
                    .filter_map(|pod| pod.metadata.name.clone())
                    .collect();
                running.sort();
                running.into_iter().next().ok_or_else(|| {
                    format!(
                        "no running pod matches {selector:?} in namespace {} ({} listed)\n\
                         how to fix: start the caller workload, or name a pod in the \
                         environment file's mesh section",
                        self.pod.namespace,
                        listed.items.len()
                    )
                })
            })
            .await
            .cloned()
    }
}

/// `Name: value` lines for curl's `-H @-`.
fn header_lines(headers: &HeaderMap) -> String {
    headers
        .iter()
        .filter_map(|(name, value)| Some(format!("{name}: {}\n", value.to_str().ok()?)))
        .collect()
}

/// The remote command's exit code from the API server's status: 0 for `Success`, the code of
/// `NonZeroExitCode`, none when the status says something else.
fn exit_code(
    status: Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::Status>,
) -> Option<i32> {
    let status = status?;
    if status.status.as_deref() == Some("Success") {
        return Some(0);
    }
    status
        .details
        .as_ref()?
        .causes
        .as_ref()?
        .iter()
        .find(|cause| cause.reason.as_deref() == Some("ExitCode"))?
        .message
        .as_deref()?
        .parse()
        .ok()
}

/// What a failed curl means: the server ended the connection without an HTTP answer (a
/// rejection the catalog can expect), or the caller could not make the request at all.
fn curl_failure(
    code: i32,
    stderr: &str,
    method: &Method,
    url: &Url,
    redactor: &Redactor,
    where_: &str,
) -> BrowserError {
    let detail = redactor.redact(&format!("curl exit {code}: {stderr}"));
    match code {
        // TLS handshake failed, empty reply, send or receive failure (reset). A timeout is
        // none of these: a NetworkPolicy or firewall that drops packets decides nothing about
        // mTLS, so it must not pass for a sidecar's rejection.
        28 => BrowserError::Request {
            method: method.to_string(),
            url: redactor.redact(url.as_str()),
            detail: format!(
                "{detail} ({where_}): no answer and no rejection before curl's timeout: the \
                 packets are dropped on the way (a NetworkPolicy, a firewall) or the workload \
                 hangs, so whether the sidecar would reject the connection is unknown\nhow to \
                 fix: let the caller reach the service (its NetworkPolicy) and run again"
            ),
        },
        35 | 52 | 55 | 56 => BrowserError::NoResponse {
            method: method.to_string(),
            url: redactor.redact(url.as_str()),
            detail,
        },
        7 => BrowserError::Request {
            method: method.to_string(),
            url: redactor.redact(url.as_str()),
            detail: format!(
                "{detail} ({where_}): nothing accepts connections there: the workload or its \
                 sidecar is not running, or mesh.service_url names the wrong port"
            ),
        },
        126 | 127 => BrowserError::Request {
            method: method.to_string(),
            url: redactor.redact(url.as_str()),
            detail: format!(
                "{detail} ({where_}): curl could not be run there (not installed, or not on \
                 PATH)\nhow to fix: name a container with curl in the environment file's mesh \
                 section (e.g. Istio's sleep sample, curlimages/curl), or a command that runs \
                 curl where the caller is"
            ),
        },
        _ => BrowserError::Request {
            method: method.to_string(),
            url: redactor.redact(url.as_str()),
            detail: format!("{detail} ({where_})"),
        },
    }
}

/// Splits `curl -i` output into status, headers and body (the last response if curl printed
/// an interim `100 Continue` first).
pub fn parse_curl_response(output: &[u8]) -> Result<(StatusCode, HeaderMap, String), String> {
    let mut rest = output;
    loop {
        let end = find(rest, b"\r\n\r\n")
            .map(|i| (i, 4))
            .or_else(|| find(rest, b"\n\n").map(|i| (i, 2)))
            .ok_or("curl printed no complete HTTP response head")?;
        let head = String::from_utf8_lossy(&rest[..end.0]).to_string();
        let body = &rest[end.0 + end.1..];
        let mut lines = head.lines();
        let status_line = lines.next().unwrap_or_default();
        let code = status_line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .and_then(|c| StatusCode::from_u16(c).ok())
            .ok_or_else(|| format!("not an HTTP status line: {status_line:?}"))?;
        if code.is_informational() && body.starts_with(b"HTTP/") {
            rest = body;
            continue;
        }
        let mut headers = HeaderMap::new();
        for line in lines {
            if let Some((name, value)) = line.split_once(':')
                && let (Ok(name), Ok(value)) = (
                    HeaderName::from_bytes(name.trim().as_bytes()),
                    HeaderValue::from_str(value.trim()),
                )
            {
                headers.append(name, value);
            }
        }
        return Ok((code, headers, String::from_utf8_lossy(body).to_string()));
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The API server's own message where there is one.
fn describe_kube_error(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!("{} ({})", status.message, status.code),
        other => crate::error_chain(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded: `curl -sS -i -H @- -- http://…/headers` against go-httpbin v2.26.0.
    #[test]
    fn curl_output_becomes_a_page() {
        let recorded = include_bytes!("../../tests/data/curl/headers-200.txt");
        let (status, headers, body) = parse_curl_response(recorded).unwrap();
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            headers.get("content-type").unwrap(),
            "application/json; charset=utf-8"
        );
        let echoed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            echoed["headers"]["X-Meshauth-Probe"][0],
            "mp0123456789abcdef"
        );
        let refused = include_bytes!("../../tests/data/curl/status-403.txt");
        let (status, _, body) = parse_curl_response(refused).unwrap();
        assert_eq!((status, body.as_str()), (StatusCode::FORBIDDEN, ""));
        let continued = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nA: b\r\n\r\nok";
        let (status, headers, body) = parse_curl_response(continued).unwrap();
        assert_eq!((status, body.as_str()), (StatusCode::CREATED, "ok"));
        assert_eq!(headers.get("a").unwrap(), "b");
        assert!(parse_curl_response(b"").is_err());
        assert!(parse_curl_response(b"garbage\r\n\r\n").is_err());
    }

    fn command_caller(script: &str) -> CurlCaller {
        let command = crate::endpoints::CommandRef {
            command: vec!["sh".into(), "-c".into(), script.into(), "curl".into()],
        };
        CurlCaller::new(
            &CallerRef::Command(command),
            KubeAccess::default(),
            Redactor::default(),
        )
    }

    /// A command caller gets curl's arguments after its own and the headers on stdin; its exit
    /// code is curl's.
    #[tokio::test]
    async fn a_command_caller_runs_curl_where_it_says() {
        let url: Url = "http://httpbin.foo:8000/headers".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Bearer t"));
        // Echoes its arguments and its stdin as the body of a 200.
        let echo = command_caller(
            r#"printf 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n%s|' "$*"; cat"#,
        );
        let page = echo.send(&Method::POST, &url, &headers).await.unwrap();
        assert_eq!(page.status, StatusCode::OK);
        assert_eq!(
            page.body,
            "-sS -i --max-time 10 --noproxy * -X POST -H @- -- http://httpbin.foo:8000/headers|authorization: Bearer t\n"
        );
        let reset = command_caller("exit 56")
            .send(&Method::GET, &url, &headers)
            .await;
        assert!(
            matches!(reset, Err(BrowserError::NoResponse { .. })),
            "{reset:?}"
        );
        let timeout = command_caller("exit 28")
            .send(&Method::GET, &url, &headers)
            .await;
        assert!(
            matches!(timeout, Err(BrowserError::Request { .. })),
            "{timeout:?}"
        );
        let missing = CurlCaller::new(
            &CallerRef::Command(crate::endpoints::CommandRef {
                command: vec!["meshauth-no-such-program".into()],
            }),
            KubeAccess::default(),
            Redactor::default(),
        )
        .send(&Method::GET, &url, &headers)
        .await
        .unwrap_err()
        .to_string();
        assert!(
            missing.contains("could not start the caller's command `meshauth-no-such-program`"),
            "{missing}"
        );
    }

    #[test]
    fn headers_go_on_stdin_one_per_line() {
        let mut headers = HeaderMap::new();
        headers.insert("authorization", HeaderValue::from_static("Bearer t"));
        headers.insert("x-meshauth-probe", HeaderValue::from_static("n"));
        assert_eq!(
            header_lines(&headers),
            "authorization: Bearer t\nx-meshauth-probe: n\n"
        );
    }

    #[test]
    fn curl_exit_codes_tell_a_rejection_from_a_broken_caller() {
        let url: Url = "http://httpbin.foo:8000/headers".parse().unwrap();
        let redactor = Redactor::default();
        for code in [35, 52, 56] {
            assert!(matches!(
                curl_failure(code, "Recv failure", &Method::GET, &url, &redactor, "exec"),
                BrowserError::NoResponse { .. }
            ));
        }
        let refused = curl_failure(7, "Couldn't connect", &Method::GET, &url, &redactor, "exec");
        assert!(
            refused.to_string().contains("nothing accepts connections"),
            "{refused}"
        );
        // A timeout is not a rejection: dropped packets say nothing about the sidecar.
        let timeout = curl_failure(28, "timed out", &Method::GET, &url, &redactor, "exec");
        assert!(
            matches!(timeout, BrowserError::Request { .. })
                && timeout
                    .to_string()
                    .contains("whether the sidecar would reject"),
            "{timeout}"
        );
        let no_curl = curl_failure(127, "not found", &Method::GET, &url, &redactor, "exec");
        assert!(
            no_curl.to_string().contains("curl could not be run there"),
            "{no_curl}"
        );
    }
}

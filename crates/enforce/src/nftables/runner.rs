//! Runs the `nft` command: ruleset text in on stdin, one transaction per call.
//!
//! The command is a vector so that tests and benchmarks can run it inside a network
//! namespace (`ip netns exec NS nft`) and never touch the host's ruleset.

use std::process::Stdio;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::NftablesError;

/// How to invoke `nft`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NftRunner {
    command: Vec<String>,
}

impl Default for NftRunner {
    fn default() -> Self {
        NftRunner {
            command: vec!["nft".into()],
        }
    }
}

impl NftRunner {
    /// `command` is the program and its leading arguments, e.g. `["nft"]`.
    pub fn new(command: Vec<String>) -> NftRunner {
        NftRunner { command }
    }

    /// `nft` inside network namespace `ns`.
    pub fn in_netns(ns: &str) -> NftRunner {
        NftRunner::new(
            ["ip", "netns", "exec", ns, "nft"]
                .map(String::from)
                .to_vec(),
        )
    }

    /// Loads `text` (`nft -f -`): all of it in one transaction, or none of it.
    pub async fn load(&self, text: &str) -> Result<(), NftablesError> {
        self.run(&["-f", "-"], Some(text)).await.map(drop)
    }

    /// Loads nftables JSON (`nft -j -f -`), one transaction like [`NftRunner::load`].
    pub async fn load_json(&self, json: &str) -> Result<(), NftablesError> {
        self.run(&["-j", "-f", "-"], Some(json)).await.map(drop)
    }

    /// Checks `text` without applying it (`nft -c -f -`).
    pub async fn check(&self, text: &str) -> Result<(), NftablesError> {
        self.run(&["-c", "-f", "-"], Some(text)).await.map(drop)
    }

    /// Runs `nft ARGS`, feeding `stdin` when given; returns standard output.
    pub async fn run(&self, args: &[&str], stdin: Option<&str>) -> Result<String, NftablesError> {
        let (program, leading) = self.command.split_first().ok_or(NftablesError::NoCommand)?;
        let mut cmd = Command::new(program);
        cmd.args(leading)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let describe = || format!("{} {}", self.command.join(" "), args.join(" "));
        let mut child = cmd.spawn().map_err(|e| NftablesError::Spawn {
            command: describe(),
            reason: e.to_string(),
        })?;
        // Write stdin beside reading the output: a large ruleset would fill the pipe
        // while nft waits for us to read its messages.
        let pipe = child.stdin.take();
        let write = async move {
            if let (Some(text), Some(mut pipe)) = (stdin, pipe) {
                // A write error means nft exited early; its status and stderr say why.
                let _ = pipe.write_all(text.as_bytes()).await;
            }
        };
        let ((), output) = tokio::join!(write, child.wait_with_output());
        let output = output.map_err(|e| NftablesError::Spawn {
            command: describe(),
            reason: e.to_string(),
        })?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(NftablesError::Refused {
                command: describe(),
                status: output.status.code().unwrap_or(-1),
                message: stderr.lines().take(3).collect::<Vec<_>>().join(" | "),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }
}

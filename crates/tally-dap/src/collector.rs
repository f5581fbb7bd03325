//! The collector's side of DAP, blocking (ureq): start a collection job for a batch interval at
//! the leader, poll it, and open the two aggregate shares into the aggregate (the entry-wise sums
//! that [`crate::layout::Layout::interpret`] reads).
//!
//! The collector holds its own HPKE key (DAP expects it to): the aggregators seal their shares
//! to it, and nobody else can open them. Its token authorises it at the leader; whoever holds it
//! can spend a batch, since a batch is collected once.

use std::time::Duration;

use prio::vdaf::Collector as _;

use crate::client::with_slash;
use crate::draft::messages::{
    AggregateShareAad, BatchSelector, Collection, CollectionJobId, CollectionReq, Decode, Encode,
    Interval, ParameterizedDecode, Query, Role, TaskId, TimeInterval,
};
use crate::draft::{self, HpkeKeypair, Label, Vdaf};

/// A collector for one task.
#[derive(Debug, Clone)]
pub struct Collector {
    agent: ureq::Agent,
    leader: String,
    task_id: TaskId,
    token: String,
    keypair: HpkeKeypair,
    vdaf: Vdaf,
}

/// What a finished collection gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collected {
    /// Reports in the batch, as both aggregators counted them.
    pub report_count: u64,
    /// The smallest interval of whole time slots holding them.
    pub interval: Interval,
    /// The entry-wise sums.
    pub aggregate: Vec<u128>,
}

/// Why a collection failed.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    #[error("no answer from {url}: {reason}")]
    Transport { url: String, reason: String },
    #[error("{url} refused: HTTP {status} {}", problem.as_deref().unwrap_or(""))]
    Refused {
        url: String,
        status: u16,
        /// DAP's problem type, e.g. `urn:ietf:params:ppm:dap:error:invalidBatchSize`.
        problem: Option<String>,
    },
    #[error("{url} answered HTTP {status}, which DAP does not use here")]
    Unexpected { url: String, status: u16 },
    #[error("the collection does not decode or open: {0}")]
    Invalid(String),
}

impl Collector {
    /// A collector of `task_id` at `leader`, with its token and key pair, for the VDAF `vdaf`.
    pub fn new(
        leader: &str,
        task_id: TaskId,
        token: String,
        keypair: HpkeKeypair,
        vdaf: Vdaf,
        timeout: Duration,
    ) -> Collector {
        Collector {
            agent: crate::client::agent(timeout),
            leader: with_slash(leader),
            task_id,
            token,
            keypair,
            vdaf,
        }
    }

    fn job_url(&self, job: &CollectionJobId) -> String {
        format!(
            "{}tasks/{}/collection_jobs/{job}",
            self.leader, self.task_id
        )
    }

    fn request(
        &self,
        method: &str,
        url: &str,
        body: Vec<u8>,
    ) -> Result<(u16, Vec<u8>, Option<String>), CollectError> {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(url)
            .header("authorization", format!("Bearer {}", self.token));
        if !body.is_empty() {
            request = request.header("content-type", CollectionReq::<TimeInterval>::MEDIA_TYPE);
        }
        let request = request.body(body).map_err(|e| CollectError::Transport {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        let mut response = self
            .agent
            .run(request)
            .map_err(|e| CollectError::Transport {
                url: url.to_owned(),
                reason: e.to_string(),
            })?;
        let status = response.status().as_u16();
        let media_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .map_err(|e| CollectError::Transport {
                url: url.to_owned(),
                reason: e.to_string(),
            })?;
        Ok((status, body, media_type))
    }

    fn refused(url: &str, status: u16, body: &[u8]) -> CollectError {
        let problem = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["type"].as_str().map(str::to_owned));
        CollectError::Refused {
            url: url.to_owned(),
            status,
            problem,
        }
    }

    /// `PUT …/collection_jobs/{job}` for the batch `interval`: the batch is spent from now on.
    pub fn start(&self, job: &CollectionJobId, interval: Interval) -> Result<(), CollectError> {
        let url = self.job_url(job);
        let body =
            CollectionReq::<TimeInterval>::new(Query::new_time_interval(interval), Vec::new())
                .get_encoded()
                .map_err(|e| CollectError::Invalid(e.to_string()))?;
        match self.request("PUT", &url, body)? {
            (201, _, _) => Ok(()),
            (status @ 400..=499, body, _) => Err(Collector::refused(&url, status, &body)),
            (status, _, _) => Err(CollectError::Unexpected { url, status }),
        }
    }

    /// `POST …/collection_jobs/{job}`: `None` while the aggregators work, then the result.
    pub fn poll(
        &self,
        job: &CollectionJobId,
        interval: Interval,
    ) -> Result<Option<Collected>, CollectError> {
        let url = self.job_url(job);
        let (status, body, media_type) = self.request("POST", &url, Vec::new())?;
        match status {
            202 => return Ok(None),
            200 => {}
            400..=499 => return Err(Collector::refused(&url, status, &body)),
            _ => return Err(CollectError::Unexpected { url, status }),
        }
        if media_type.as_deref() != Some(Collection::<TimeInterval>::MEDIA_TYPE) {
            return Err(CollectError::Invalid(format!(
                "the collection came as {media_type:?}"
            )));
        }
        let invalid = |e: &dyn std::fmt::Display| CollectError::Invalid(e.to_string());
        let collection = Collection::<TimeInterval>::get_decoded(&body).map_err(|e| invalid(&e))?;
        let aad = AggregateShareAad::new(
            self.task_id,
            Vec::new(),
            BatchSelector::new_time_interval(interval),
        )
        .get_encoded()
        .map_err(|e| invalid(&e))?;
        let mut shares = Vec::with_capacity(2);
        for (role, sealed) in [
            (Role::Leader, collection.leader_encrypted_aggregate_share()),
            (Role::Helper, collection.helper_encrypted_aggregate_share()),
        ] {
            let info = draft::application_info(Label::AggregateShare, role, Role::Collector);
            let plain = self
                .keypair
                .open(&info, sealed, &aad)
                .map_err(|e| invalid(&e))?;
            shares.push(
                <Vdaf as prio::vdaf::Vdaf>::AggregateShare::get_decoded_with_param(
                    &(&self.vdaf, &()),
                    &plain,
                )
                .map_err(|e| invalid(&e))?,
            );
        }
        let count = usize::try_from(collection.report_count()).map_err(|e| invalid(&e))?;
        let aggregate = self
            .vdaf
            .unshard(&(), shares, count)
            .map_err(|e| invalid(&e))?;
        Ok(Some(Collected {
            report_count: collection.report_count(),
            interval: *collection.interval(),
            aggregate,
        }))
    }

    /// Starts a collection of `interval` and polls it (every `every`) until it ends.
    pub fn collect(
        &self,
        interval: Interval,
        every: Duration,
        give_up_after: Duration,
    ) -> Result<Collected, CollectError> {
        let job: CollectionJobId = rand::random();
        self.start(&job, interval)?;
        let deadline = std::time::Instant::now() + give_up_after;
        loop {
            if let Some(collected) = self.poll(&job, interval)? {
                return Ok(collected);
            }
            if std::time::Instant::now() > deadline {
                return Err(CollectError::Invalid(format!(
                    "the collection did not finish within {give_up_after:?}"
                )));
            }
            std::thread::sleep(every);
        }
    }
}

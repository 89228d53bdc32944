"""The GPU worker's job protocol: the plain data between a caller and the worker.

Every message is a pydantic model with a `type` field and travels as one JSON
object (UTF-8 bytes). Nothing else crosses the boundary: audio travels as a
file path inside a `Track`. Today the transport is a `multiprocessing` pipe
between the bot and its local worker process (`engine.worker.client` and
`engine.worker.process`); a distributed transport only has to carry the same bytes.

Caller -> worker

- `submit {job: SongJob}`: make one song. The caller picks `job.job_id`, unique
  among its jobs in flight. A job with `spec` set skips the songwriter (a
  retry reuses the spec written the first time). `job.adapter` names a
  subfolder of the worker's `ADAPTERS_DIR`: the worker loads it the first time
  and sings with it at `job.adapter_scale`; one it cannot load fails the job
  with reason `adapter_error`.
- `submit_batch {jobs: [SongJob, ...]}`: make 2 to 8 songs in one generation
  (one pipeline call, `BATCH_SIZE`), each with its own spec and seed. The jobs
  share their adapter, scale, format and steps (`can_share_batch`); each is
  answered on its own, as if submitted alone. A worker that restarts may get
  the jobs of a batch again one by one.
- `stop {}`: finish nothing more; the worker aborts the song it is singing,
  answers nothing further and exits.

Worker -> caller

- `ready {pid, device, songwriter, load_seconds, batch_size}`: models loaded;
  sent once. `batch_size` is `BATCH_SIZE` as the GPU tier allows it: the most
  jobs a `submit_batch` should carry.
- `fatal {message}`: the worker could not start (e.g. no checkpoint); it exits.
- `progress {job_id, stage, step, total}`: `stage` is "writing" (the
  songwriter started on it: step 0 of 1) or "singing" (diffusion step `step`
  of `total`; step 0 when singing starts). A job with a progress message has
  been *started*: if the worker dies now, the job may be what killed it.
- `written {job_id, spec, source, seconds, fallback_reason}`: the songwriter is
  done; the caller keeps `spec` so a retry can skip writing.
- `done {job_id, track, write_seconds, sing_seconds}`: the track file exists.
- `failed {job_id, reason, message}`: the job failed but the worker lives on.
  `reason` is a short category for statistics (`FailureReason`); `message`
  says what happened in words.

For each submitted job the worker sends zero or more `progress`, at most one
`written`, then exactly one `done` or `failed`, unless it dies first. Jobs are
taken in the order they were submitted; the worker writes one song while it
sings the previous one, so a caller keeps at most a few jobs in flight
(`WORKER_MAX_IN_FLIGHT`). A worker death is not a message: the caller sees the
connection close (or the process exit) and decides about retries.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from engine.spec import MAX_DURATION, MIN_DURATION, SongSpec, StationStyle, Track

#: Longest listener theme the protocol carries (the songwriter trims it further).
MAX_JOB_THEME = 1000
#: Adapter names as the worker takes them (a folder name: no separators, no '.' or '..').
ADAPTER_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
MAX_ADAPTER_SCALE = 4.0
#: Most recent songs sent along so the songwriter does not repeat them.
MAX_RECENT = 20
#: Most songs one generation makes (`BATCH_SIZE`'s upper bound).
MAX_BATCH = 8
#: Songs made together are made at the longest one's length (engine.song_batch);
#: a song joins a batch only if it is at least this share of the batch's length.
BATCH_LENGTH_SHARE = 0.75

Stage = Literal["writing", "singing"]
#: Categories of `failed.reason` and of failures the caller records itself.
FailureReason = Literal[
    "oom",
    "engine_error",
    "songwriter_error",
    "bad_job",
    "worker_died",
    "worker_stalled",
    "worker_start_failed",
    "adapter_error",
]
AudioFormat = Literal["ogg", "flac", "mp3", "wav"]


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()


class SongJob(BaseModel):
    """One song to make: a wish in a station's style, or a spec to sing as it is."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: str = Field(min_length=1, max_length=100)
    theme: str = Field(default="", max_length=MAX_JOB_THEME)
    style: StationStyle = Field(default_factory=StationStyle)
    duration: int | None = Field(default=None, ge=MIN_DURATION, le=MAX_DURATION)
    seed: int | None = Field(default=None, ge=0, lt=2**63)
    recent: tuple[SongSpec, ...] = Field(default=(), max_length=MAX_RECENT)
    spec: SongSpec | None = None
    fmt: AudioFormat = "ogg"
    steps: int | None = Field(default=None, ge=1, le=200)
    #: The adapter (a subfolder of ADAPTERS_DIR) to sing with; None: the base model.
    adapter: str | None = Field(default=None, pattern=ADAPTER_NAME_PATTERN)
    adapter_scale: float = Field(default=1.0, ge=0.0, le=MAX_ADAPTER_SCALE)


# --- caller -> worker ---------------------------------------------------------


class Submit(Message):
    type: Literal["submit"] = "submit"
    job: SongJob


class SubmitBatch(Message):
    type: Literal["submit_batch"] = "submit_batch"
    jobs: tuple[SongJob, ...] = Field(min_length=2, max_length=MAX_BATCH)

    @model_validator(mode="after")
    def _one_batch(self) -> SubmitBatch:
        ids = [job.job_id for job in self.jobs]
        if len(set(ids)) != len(ids):
            raise ValueError("the jobs of a batch need different job ids")
        first = self.jobs[0]
        if not all(_same_settings(first, job) for job in self.jobs[1:]):
            raise ValueError("the jobs of a batch must share adapter, adapter_scale, fmt and steps")
        return self


class Stop(Message):
    type: Literal["stop"] = "stop"


def _same_settings(a: SongJob, b: SongJob) -> bool:
    return (a.adapter, a.adapter_scale, a.fmt, a.steps) == (
        b.adapter,
        b.adapter_scale,
        b.fmt,
        b.steps,
    )


def planned_length(job: SongJob) -> int:
    """The length `job` will have: its own, its spec's, else the style's longest."""
    if job.spec is not None:
        return job.spec.duration
    return job.duration or job.style.max_duration


def can_share_batch(batch: list[SongJob], job: SongJob) -> bool:
    """Whether `job` may be made in one generation with the jobs of `batch`: the same
    adapter, scale, format and steps, and lengths close enough that no song is made
    much longer than it is (`BATCH_LENGTH_SHARE`)."""
    if len(batch) >= MAX_BATCH or not all(_same_settings(other, job) for other in batch):
        return False
    lengths = [planned_length(other) for other in batch] + [planned_length(job)]
    return min(lengths) >= BATCH_LENGTH_SHARE * max(lengths)


# --- worker -> caller ---------------------------------------------------------


class WorkerReady(Message):
    type: Literal["ready"] = "ready"
    pid: int
    device: str
    songwriter: str
    load_seconds: float
    batch_size: int = Field(default=1, ge=1, le=MAX_BATCH)


class WorkerFatal(Message):
    type: Literal["fatal"] = "fatal"
    message: str


class JobProgress(Message):
    type: Literal["progress"] = "progress"
    job_id: str
    stage: Stage
    step: int
    total: int

    def describe(self) -> str:
        if self.stage == "writing":
            return "writing"
        return f"singing {self.step}/{self.total}"


class JobWritten(Message):
    type: Literal["written"] = "written"
    job_id: str
    spec: SongSpec
    source: str
    seconds: float
    fallback_reason: str | None = None


class JobDone(Message):
    type: Literal["done"] = "done"
    job_id: str
    track: Track
    write_seconds: float
    sing_seconds: float

    @property
    def generation_seconds(self) -> float:
        """Time the worker spent on the song: writing plus singing, not queueing."""
        return self.write_seconds + self.sing_seconds


class JobFailure(Message):
    type: Literal["failed"] = "failed"
    job_id: str
    reason: FailureReason
    message: str


ToWorker = Annotated[Submit | SubmitBatch | Stop, Field(discriminator="type")]
FromWorker = Annotated[
    WorkerReady | WorkerFatal | JobProgress | JobWritten | JobDone | JobFailure,
    Field(discriminator="type"),
]
_TO_WORKER: TypeAdapter[Submit | SubmitBatch | Stop] = TypeAdapter(ToWorker)
_FROM_WORKER: TypeAdapter[WorkerReady | WorkerFatal | JobProgress | JobWritten | JobDone | JobFailure] = TypeAdapter(
    FromWorker
)


def read_to_worker(data: bytes) -> Submit | SubmitBatch | Stop:
    """Parse a caller's message; raises pydantic's `ValidationError` on bad data."""
    return _TO_WORKER.validate_json(data)


def read_from_worker(
    data: bytes,
) -> WorkerReady | WorkerFatal | JobProgress | JobWritten | JobDone | JobFailure:
    """Parse a worker's message; raises pydantic's `ValidationError` on bad data."""
    return _FROM_WORKER.validate_json(data)

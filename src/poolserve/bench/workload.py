"""What ``poolserve bench`` sends, and when a setting stops (pure: no HTTP, no clock).

Inputs are deterministic: text ``i`` is ``input_tokens - 2`` words drawn (seeded by ``i``) from
words that the BERT WordPiece vocabulary keeps whole, so all-MiniLM-L6-v2 counts ``input_tokens``
tokens with [CLS] and [SEP]; other tokenizers count a few more or less, and the report states the
count of the model's own tokenizer (``tokens_per_text``; see :mod:`poolserve.bench.tokens`). The
defaults here are the CLI's too.

Two HTTP APIs are spoken (:data:`API_PATHS`): vLLM's (``/v1/embeddings``, ``/v1/rerank``) and
Infinity's (``/embeddings``, ``/rerank`` under its ``--url-prefix``, which ``--url`` then includes).
The request bodies are the same for both; LESSONS_LEARNED.md ("HTTP API") has what else differs.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from poolserve.bench.metrics import BaselineResult, Setting
from poolserve.errors import SpecError
from poolserve.vllm import api as vllm_api

BenchTask = Literal["embed", "score"]
BenchApi = Literal["vllm", "infinity"]
BENCH_APIS: tuple[BenchApi, ...] = ("vllm", "infinity")

DEFAULT_CONCURRENCY = (1, 4, 16, 64)
DEFAULT_BATCH_SIZES = (1, 8, 32)
DEFAULT_REQUESTS = 200
DEFAULT_MAX_TIME_S = 300.0
RERANK_PATH = "/v1/rerank"
API_PATHS: dict[BenchApi, dict[BenchTask, str]] = {
    "vllm": {"embed": vllm_api.EMBEDDINGS, "score": RERANK_PATH},
    # Infinity (infinity_emb/infinity_server.py, 0.0.78): f"{url_prefix}/embeddings" and f"{url_prefix}/rerank",
    # url_prefix "" by default; a prefix (``--url-prefix /v1``) goes into the base URL.
    "infinity": {"embed": "/embeddings", "score": "/rerank"},
}
QUERY_WORDS = 12
_BODY_POOL = 64

# Words the BERT uncased WordPiece vocabulary keeps whole (checked with all-MiniLM-L6-v2's tokenizer).
_WORDS_TEXT = """
able about above act add after again against ago air all also always among an and animal answer any
appear are area as ask at back base be beauty been before began begin behind best better between big
bird black blue boat body book both box boy bring brought build busy but by call came can car care
carry cause center certain change check children city class clear close cold color come common
complete contain correct could country course cover cross cry cut dark day decide deep develop did
differ direct distant do does dog done door down draw drive dry during each early earth ease east
eat end enough even ever every example eye face fact fall family far farm fast father feel feet few
field figure fill final find fine fire first fish five fly follow food foot for force form found
four free friend from front full game gave get girl give go gold good got govern great green ground
group grow had half hand happen hard has have head hear heard heat help her here high him his hold
home horse hot hour house how hundred idea if in inch interest is island just keep kind king knew
know land language large last late laugh lay lead learn leave left less let letter life light like
line list listen little live long look love low machine made main make man many map mark may me mean
measure men might mile mind minute miss money moon more morning most mother mountain move much music
must my name near need never new next night no north note nothing notice noun now number object
ocean of off often oh old on once one only open or order other our out over own page paint paper
part pass pattern people person picture piece place plain plan plane plant play point port pose
possible pound power press problem produce product pull put question quick rain ran reach read ready
real record red remember rest right river road rock room round rule run said same saw say school
science sea second see seem self sentence serve set several shape she ship short should show side
simple since sing six slow small snow so some song soon sound south space special spell stand star
start state stay step still stood stop story street strong study such sun sure surface system table
tail take talk teach tell ten test than the their them then there these they thing think this those
though thought thousand three through time tire to together told too took top toward town travel
tree true try turn two under unit until up us use usual verb very voice vowel wait walk want war
warm was watch water way we week well went were west what wheel when where which while white who
whole why will wind with wonder wood word work world would write year yes young your
"""
WORDS = tuple(_WORDS_TEXT.split())


# ----------------------------------------------------------------------------------------------------
# Inputs


def make_text(index: int, input_tokens: int) -> str:
    """Deterministic text ``index`` of about ``input_tokens`` tokens (special tokens included)."""
    rng = random.Random(index)
    return " ".join(rng.choice(WORDS) for _ in range(max(1, input_tokens - 2)))


def make_texts(count: int, input_tokens: int, *, start: int = 0) -> list[str]:
    """Texts ``start .. start+count-1`` (see :func:`make_text`)."""
    return [make_text(i, input_tokens) for i in range(start, start + count)]


def make_query(index: int = 0) -> str:
    """The rerank query: a short deterministic text."""
    return make_text(1_000_000 + index, QUERY_WORDS + 2)


@dataclass(frozen=True)
class Workload:
    """What each request of a setting sends."""

    task: BenchTask
    model: str | None
    input_tokens: int
    batch_size: int
    """Texts per embeddings request, or documents per rerank request."""
    api: BenchApi = "vllm"
    """Whose HTTP API the server speaks (the paths; the bodies are the same)."""

    def texts(self, request_index: int) -> list[str]:
        """The texts (or documents) of request ``request_index``; the pool cycles."""
        i = request_index % _BODY_POOL
        return make_texts(self.batch_size, self.input_tokens, start=i * self.batch_size)

    def path(self) -> str:
        """The URL path requests go to."""
        return API_PATHS[self.api][self.task]

    def query(self, request_index: int) -> str | None:
        """The rerank query of request ``request_index`` (None for embeddings)."""
        return None if self.task == "embed" else make_query(request_index % _BODY_POOL)

    def body(self, request_index: int) -> bytes:
        """The encoded JSON body of request ``request_index``."""
        texts = self.texts(request_index)
        query = self.query(request_index)
        if query is None:
            data = vllm_api.embed_request(texts, self.model)
        else:
            data = vllm_api.rerank_request(query, texts, self.model)
        return json.dumps(data).encode()

    def tokens(self, request_index: int, count: TokenCountFn) -> int:
        """Tokens of request ``request_index`` by ``count`` (the model's tokenizer): texts, or query-document pairs."""
        return count(self.texts(request_index), self.query(request_index))

    def pool_texts(self) -> list[str]:
        """Every distinct text this workload sends (what the in-process baseline encodes)."""
        return make_texts(_BODY_POOL * self.batch_size, self.input_tokens)



@dataclass(frozen=True)
class BenchProgress:
    """A progress event: ``done`` of ``total`` (None in duration mode; then ``fraction`` is time)."""

    phase: Literal["warmup", "measure", "self-test", "baseline"]
    setting: Setting
    index: int
    """0-based number of this setting in the sweep."""
    settings: int
    done: int
    total: int | None
    fraction: float | None


ProgressCallback = Callable[[BenchProgress], None]


@dataclass(frozen=True)
class Bounds:
    """When a setting stops: after ``requests`` measured requests or ``duration_s``, and at ``max_time_s``."""

    requests: int | None = DEFAULT_REQUESTS
    duration_s: float | None = None
    warmup: int | None = None
    """Warm-up requests (default: one per worker, at least 2)."""
    max_time_s: float = DEFAULT_MAX_TIME_S
    """Hard limit of the measurement, counted from its start; the warm-up has a cap of its own this long."""

    def __post_init__(self) -> None:
        if (self.requests is None) == (self.duration_s is None):
            raise SpecError("bench: give either a request count or a duration, not both and not neither")
        if self.requests is not None and self.requests < 1:
            raise SpecError(f"bench: --requests {self.requests}: must be at least 1")
        if self.duration_s is not None and self.duration_s <= 0:
            raise SpecError(f"bench: --duration {self.duration_s}: must be positive")
        if self.warmup is not None and self.warmup < 0:
            raise SpecError(f"bench: --warmup {self.warmup}: must be 0 or more")
        if self.max_time_s <= 0:
            raise SpecError(f"bench: time cap {self.max_time_s}: must be positive")



def settings_grid(concurrency: Sequence[int], batch_sizes: Sequence[int]) -> list[Setting]:
    """Every (concurrency, batch size) pair, batch size outer, concurrency inner.

    Raises:
        SpecError: if a value is not a positive integer.
    """
    for name, values in (("concurrency", concurrency), ("batch size", batch_sizes)):
        if not values or any(v < 1 for v in values):
            raise SpecError(f"bench: {name} values must be positive integers, got {list(values)}")
    return [Setting(c, b) for b in batch_sizes for c in concurrency]


TokenCountFn = Callable[[Sequence[str], str | None], int]
"""``count(texts, query)`` -> tokens the model sees: each text alone, or each (query, text) pair when ``query``
is given, special tokens included (see :mod:`poolserve.bench.tokens`)."""

BaselineFn = Callable[[Sequence[str], int, str | None], BaselineResult]
"""``baseline(texts, batch_size, query)`` -> texts/s of direct in-process inference (see poolserve.bench.baseline)."""


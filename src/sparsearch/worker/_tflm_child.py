"""Child process of ``sparsearch.worker.tflm``: load a ``.tflite`` in the TFLite Micro Python
interpreter (recording allocator), run every input of every set, print the arena allocations.

``python -m sparsearch.worker._tflm_child IN.npz OUT.npz``: IN holds ``model`` (the flatbuffer
as uint8) and int8 NHWC input sets ``x_<name>``; OUT gets the int8 outputs ``y_<name>`` and
``info`` (JSON: input and output details, the TFLM version). The arena figures go to the
stdout/stderr the interpreter's C++ writes to, which the parent reads. A crash here (a model
the runtime rejects) costs this process, never the worker.
"""

from __future__ import annotations

import json
import sys

import numpy as np

# Arena sizes tried in turn: the interpreter needs one at least as large as the model asks for.
ARENA_SIZES = (1 << 20, 1 << 23, 1 << 26, 1 << 28)


def _details(d: dict) -> dict:
    q = d["quantization_parameters"]
    return {
        "shape": [int(v) for v in d["shape"]],
        "dtype": np.dtype(d["dtype"]).name,
        "scale": float(q["scales"][0]) if len(q["scales"]) else 0.0,
        "zero_point": int(q["zero_points"][0]) if len(q["zero_points"]) else 0,
    }


def main(src: str, dst: str) -> int:
    import tflite_micro
    from tflite_micro.python.tflite_micro import runtime

    given = np.load(src)
    model = given["model"].tobytes()
    interpreter, error = None, None
    for size in ARENA_SIZES:
        try:
            interpreter = runtime.Interpreter.from_bytes(
                model,
                arena_size=size,
                intrepreter_config=runtime.InterpreterConfig.kAllocationRecording,
            )
            break
        except Exception as e:  # too small an arena, or a model TFLM cannot run
            error = e
    if interpreter is None:
        print(f"TFLM cannot load the model: {error}", file=sys.stderr)
        return 3
    inp, out = interpreter.get_input_details(0), interpreter.get_output_details(0)
    results: dict[str, np.ndarray] = {}
    for key in given.files:
        if not key.startswith("x_"):
            continue
        images = given[key]
        outputs = np.empty((len(images), int(np.prod(out["shape"]))), dtype=np.int8)
        for i in range(len(images)):
            interpreter.set_input(images[i : i + 1], 0)
            interpreter.invoke()
            outputs[i] = interpreter.get_output(0).reshape(-1)
        results["y_" + key[2:]] = outputs
    sys.stdout.flush()
    interpreter.print_allocations()
    info = {
        "input": _details(inp),
        "output": _details(out),
        "version": f"tflite-micro {getattr(tflite_micro, '__version__', 'unknown')}",
    }
    np.savez(dst, info=np.array(json.dumps(info)), **results)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))

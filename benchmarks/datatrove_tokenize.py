"""datatrove's tokenizer step on the same jsonl file `datahub_scale.py` builds, for the
comparison in BENCHMARKS.md (#34 part 3). Runs in a separate venv with datatrove (its
pinned dependencies stay out of steep's):

    python3 -m venv /tmp/dtvenv && /tmp/dtvenv/bin/pip install datatrove tokenizers orjson
    nice -n 10 /usr/bin/time -v /tmp/dtvenv/bin/python benchmarks/datatrove_tokenize.py \\
        --input /tmp/corpus-100.jsonl --tokenizer MODEL_DIR/tokenizer.json --out /tmp/dt-out

One file is one datatrove task (it parallelises across files), so ``--tasks`` > 1 needs
``--input`` to be a folder of files. ``--shuffle`` keeps datatrove's default of shuffling
documents (a second pass over the tokens); off, it writes them in order, as steep does.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.tokens import DocumentTokenizer


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--input", type=Path, required=True, help="a jsonl file or a folder of them")
    p.add_argument("--tokenizer", required=True, help="tokenizer.json")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--tasks", type=int, default=1)
    p.add_argument("--eos", default="<|endoftext|>")
    p.add_argument("--shuffle", action="store_true")
    args = p.parse_args()
    folder, pattern = (
        (args.input, "*.jsonl") if args.input.is_dir() else (args.input.parent, args.input.name)
    )
    pipeline = [
        JsonlReader(str(folder), glob_pattern=pattern, doc_progress=False),
        DocumentTokenizer(
            str(args.out / "tokens"),
            tokenizer_name_or_path=args.tokenizer,
            eos_token=args.eos,
            shuffle_documents=args.shuffle,
            local_working_dir=str(args.out / "work") if args.shuffle else None,
        ),
    ]
    t0, c0 = time.perf_counter(), time.process_time()
    LocalPipelineExecutor(
        pipeline, tasks=args.tasks, workers=args.tasks, logging_dir=str(args.out / "logs")
    ).run()
    tokens = 0
    for meta in (args.out / "tokens").glob("*.metadata"):
        tokens += int(meta.read_text().split("\n")[1].strip() or 0)
    print(json.dumps({"wall_s": time.perf_counter() - t0, "main_cpu_s": time.process_time() - c0,
                      "tokens": tokens}))  # fmt: skip


if __name__ == "__main__":
    main()

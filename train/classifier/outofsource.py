"""Build the out-of-source evaluation: public prompt sets that no part of training reads.

    .venv/bin/python train/classifier/outofsource.py [--mirrors DIR]

The held-out split of public.py comes from the same sources as training (other source tasks of the
same collections), so it over-states how the model does on prompts written elsewhere. This set
comes from three other collections, read at pinned commits like public.py's sources (a git copy
of each at DIR/<owner>+<name>/repo), and labelled by the four tasks' definitions (issue 14):

- AlpacaEval's evaluation set, its `oasst`, `koala` and `helpful_base` parts (real user prompts;
  its `selfinstruct` and `vicuna` parts are training sources and are left out): labelled by hand,
  one letter per prompt in `ALPACA_EVAL_LABELS`; prompts that fit none of the four (arithmetic,
  puzzles, chit-chat, role-play, rewriting) or fit two are left out, and of the sixteen near-copies
  of one "I like to host guests ..." recipe template two are kept.
- WizardLM's test set: by its `Skill` field (`WIZARDLM_SKILLS`); "Writting" prompts that ask how
  to write something rather than for the writing are left out (`WIZARDLM_SKIP`).
- FLASK's evaluation set: by its `task` field (`FLASK_TASKS`, the source dataset of each prompt);
  its MBPP and HumanEval rows are never read, nor its Self-instruct and Vicuna rows (training
  sources), nor its Koala and WizardLM rows (already above).

Writes data/public/outofsource.jsonl (not committed: it quotes the sources). It is an evaluation set only:
train.py never reads it. SOURCES.md lists the commits and licences.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from public import LETTERS, MAX_CHARS, Row, Sources, mirrors_argument, write  # noqa: E402

OUT = HERE / "data" / "public" / "outofsource.jsonl"
ALPACA_EVAL = ("tatsu-lab/alpaca_eval", "cd543a149df89434d8a54582c0151c0b945c3d20")
WIZARDLM = ("nlpxucan/WizardLM", "cd4b4cc022b6426aee62d51f7ae99a4a6ec9aaef")
FLASK = ("kaistAI/FLASK", "3b4e22bc34aa9dc15ea0c51be3cbf5f3c8b1b5e5")

# Index in results/gpt4/model_outputs.json -> task letter (c coding, r research, w creative, a analysis).
ALPACA_EVAL_LABELS = {
    "r": "0 1 2 3 4 5 7 9 10 11 12 13 14 15 16 17 18 19 22 23 24 25 26 27 28 29 30 32 33 34 35 36 37 38 40 41 42 43 "
    "44 45 46 48 49 50 51 53 54 55 59 60 61 62 63 65 66 68 69 70 71 73 75 78 79 80 81 82 83 84 86 87 88 89 91 92 93 "
    "95 97 98 99 102 103 104 105 107 108 112 113 114 116 117 118 119 120 121 122 123 124 125 126 127 128 "
    "129 131 132 140 141 144 151 152 154 155 157 158 160 163 164 166 167 174 175 178 180 181 183 186 187 192 194 196 "
    "197 198 207 210 215 222 225 230 233 236 240 242 246 249 253 256 257 259 261 263 264 278 280 "
    "286 287 288 289 292 295 301 302 304 306 308 309 310 311 312 314 316 317 318 322 323 325 327 328 330 332 334 335 "
    "337 341 344 345 346 351 352 353 354 355 356 360 364 367 368 370 372 374 375 377 378 379 380 382 383 385 386 387 "
    "388 392 393 394 395 397 398 403 404 407 409 411 413 416 418 422 424 425 428 430 432 437 443 446 447 452 454 455 "
    "459 463 465 467 472",
    "w": "56 74 96 101 110 130 134 135 136 138 148 162 165 171 177 179 182 184 193 201 203 204 206 208 209 214 216 217 "
    "218 219 220 221 223 227 228 229 231 237 241 250 270 273 274 275 276 279 282 284 291 293 298 315 319 336 338 342 "
    "357 363 369 373 399 412 414 426 427 435 436 439 449 469",
    "c": "213 252 271 290 297 300 313 320 324 347 358 361 381 391 401 405 406 410 417 419 429 434 440 441 451 460 464 "
    "466 470",
    "a": "143 262 277",
}
WIZARDLM_SKILLS = {
    "Code Generation": "coding",
    "Code Debug": "coding",
    "Writting": "creative",
    "Biology": "research",
    "Technology": "research",
    "TruthfulQA": "research",
    "Sport": "research",
    "Law": "research",
    "Medicine": "research",
    "Literature": "research",
    "Entertainment": "research",
    "Art": "research",
    "Music": "research",
    "Economy": "research",
    "Physics": "research",
    "History": "research",
    "Chemistry": "research",
    "Philosophy": "research",
}
"""Math, Reasoning, Common-Sense (mostly puzzles), Counterfactual, Multilingual, Roleplay, Ethics,
Toxicity, Complex Format and Computer Science (half code, half explanation) are left out."""
WIZARDLM_SKIP = frozenset({38, 39, 40, 41, 42, 44, 52, 147})
"""Questions *about* writing (how to structure a review, what to put in a statement), not writing."""
FLASK_TASKS = {
    "Leetcode": "coding",
    "Concode": "coding",
    "Cosqa": "coding",
    "Bigbench: autodebugging": "coding",
    "Bigbench: semantic parsing spider": "coding",
    "Hotpotqa": "research",
    "Fairytaleqa": "research",
    "Finegrained-rlhf": "research",
    "Fetaqa": "research",
    "Wikitablequesitons": "research",
    "Conditionalqa": "research",
    "Textbookqa": "research",
    "Asqa": "research",
    "Truthfulqa": "research",
    "Popqa": "research",
    "Realtimeqa": "research",
    "Strategyqa": "research",
    "Commonsenseqa 2.0": "research",
    "Haiku generation": "creative",
    "Writingprompts": "creative",
    "Pocketdoc/rucaibox-story-generation-alpaca": "creative",
    "Common_gen": "creative",
    "Lfqa_summary": "analysis",
    "Bigbench: irony identification": "analysis",
    "Cola": "analysis",
    "Contractnli": "analysis",
    "Bigbench: real or fake text": "analysis",
    "Bigbench: movie dialog same or different": "analysis",
    "Crepe": "analysis",
    "Diffqg": "analysis",
}
"""Source dataset -> task. Classifying or summarizing given text is analysis; questions, open or
about a given passage or table, are research. Everything else (math, logic, ethics, dialogue,
translation, MBPP, HumanEval, ...) is left out."""
NEVER = frozenset({"Mbpp", "Humaneval", "Self-instruct", "Vicuna", "Koala", "Wizardlm"})


def alpaca_eval(src: Sources) -> Iterator[Row]:
    rows = json.loads(src.read(ALPACA_EVAL, "results/gpt4/model_outputs.json"))
    for letter, ids in ALPACA_EVAL_LABELS.items():
        for i in map(int, ids.split()):
            item = rows[i]
            if item["dataset"] not in ("oasst", "koala", "helpful_base"):
                sys.exit(f"alpaca_eval row {i} is from {item['dataset']}, not an out-of-source part")
            text = item["instruction"].replace("<br>", "\n").strip()
            yield text, LETTERS[letter], f"alpaca-eval-{item['dataset']}", f"alpaca-eval:{item['dataset']}"


def wizardlm(src: Sources) -> Iterator[Row]:
    for line in src.read(WIZARDLM, "WizardLM/data/WizardLM_testset.jsonl").splitlines():
        item = json.loads(line)
        task = WIZARDLM_SKILLS.get(item["Skill"])
        if task and item["idx"] not in WIZARDLM_SKIP:
            yield item["Instruction"].strip(), task, "wizardlm-test", f"wizardlm:{item['Skill']}"


def flask(src: Sources) -> Iterator[Row]:
    for line in src.read(FLASK, "evaluation_set/flask_evaluation.jsonl").splitlines():
        item = json.loads(line)
        if item["task"] in NEVER:
            continue
        task = FLASK_TASKS.get(item["task"])
        if task:
            yield item["instruction"].replace("\\n", "\n").strip(), task, "flask", f"flask:{item['task']}"


def build(src: Sources) -> list[Row]:
    seen: set[str] = set()
    out = []
    for text, task, source, group in (*alpaca_eval(src), *wizardlm(src), *flask(src)):
        key = " ".join(text.lower().split())
        if key not in seen:
            seen.add(key)
            out.append((text[:MAX_CHARS], task, source, group))
    return out


def main() -> None:
    rows = build(Sources(mirrors_argument(__doc__.split("\n")[0])))
    write(OUT, rows)
    print(len(rows), dict(Counter(r[1] for r in rows)), dict(Counter(r[2] for r in rows)))


if __name__ == "__main__":
    main()

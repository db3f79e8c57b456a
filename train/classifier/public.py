"""Build the public part of the classifier's data from pinned commits of permissively licensed repositories.

    .venv/bin/python train/classifier/public.py [--mirrors DIR]

Every source is read with `git show <commit>:<path>` from a copy of its repository: DIR/<owner>+<name>/repo
(a bare or normal git directory; `git clone https://github.com/<owner>/<name> DIR/<owner>+<name>/repo`
makes one). Writes data/public/{train,val,test}.jsonl (not committed: they quote the sources), one
{"text", "task", "source", "group"} per line. Rows are split by *group* (one underlying dataset or
source task), never row by row, so val and test measure prompts of kinds the model has not seen; each
group is capped so that no single source task dominates any split. SOURCES.md lists the sources,
their licences and the mapping. databricks-dolly-15k, MBPP, HumanEval and CodeAlpaca are never read.
"""

from __future__ import annotations

import argparse
import ast
import csv
import hashlib
import io
import json
import random
import re
import subprocess
import sys
import sysconfig
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "data" / "public"
MAX_CHARS = 4000
"""Longer prompts are cut here (the runtime reads at most 300 words anyway)."""

FLAN = ("google-research/FLAN", "e9e4ec6e2701182c7a91af176f705310da541277")
SELF_INSTRUCT = ("yizhongw/self-instruct", "0b26ccaa415992100fa32df62d41b994cf928e23")
FASTCHAT = ("lm-sys/FastChat", "0e6d3e4beaab66f4d3f93db72541a4abab8af28d")
TLDR = ("tldr-pages/tldr", "08e345f42639f67d99282813247ac670dc6e87cb")
ALGORITHMS = ("TheAlgorithms/Python", "f5988cc09713315817df6a7e327e258013a94440")
GPTEACHER = ("teknium1/GPTeacher", "481075123c29854bddb82655badeef6a438f2436")
NATURAL_QUESTIONS = ("google-research-datasets/natural-questions", "fb26a3073b1fe636c97302890a27b491d6530130")
TRUTHFUL = ("benedictflorance/truthfulqa_experiments", "6fdfd38288e86296582a584694df5cf43d1f634a")
"""A copy of TruthfulQA (sylinrl/TruthfulQA, Apache-2.0) and of 200 Natural Questions dev
questions with their Wikipedia long answers (CC-BY-SA-3.0); the originals are not on the mirror."""
NL2BASH = ("TellinaTool/nl2bash", "466c5fe873ab08c7cc0112ea1521cc6ad9c20992")
"""`data/bash` is MIT (the rest of the repository is GPL-3.0 and is not read)."""
DEEP_REGEX = ("nicholaslocascio/deep-regex", "096490db7f4b0394fbb46b914cb35a0aa1cba29c")
EXERCISM = ("exercism/problem-specifications", "03f83310ed0547b902d211a05d23b3d74661df02")

# Super-NaturalInstructions (via FLAN's copy of its metadata): category -> task.
NI_CATEGORIES = {
    "Question Answering": "research",
    "Answer Generation -- Jeopardy Difficulty Normal": "research",
    "Explanation": "research",
    "Fact Verification": "research",
    "Sentiment Analysis": "analysis",
    "Text Categorization": "analysis",
    "Information Extraction": "analysis",
    "Named Entity Recognition": "analysis",
    "Summarization": "analysis",
    "Keyword Tagging": "analysis",
    "Spam Classification": "analysis",
    "Food Classification": "analysis",
    "Stance Detection": "analysis",
    "Irony Detection": "analysis",
    "Toxic Language Detection": "analysis",
    "Intent Identification": "analysis",
    "Section Classification": "analysis",
    "Overlap Extraction": "analysis",
    "Story Composition": "creative",
    "Poem Generation": "creative",
    "Rhyme Generation": "creative",
    "Sentence Expansion": "creative",
    "Text to Code": "coding",
    "Code to Text": "coding",
    "Count For Loops": "coding",
}

# P3 prompts (public pool of T0 training prompts in self-instruct): template-name pattern -> task;
# templates that match none (question generation, titles, paraphrase writing, ...) are left out.
P3_TEMPLATES = [
    (r"^adversarial_qa_.*_(answer_the_following_q|based_on|question_context_answer|tell_what_it_is)$", "research"),
    (r"^cosmos_qa_(?!context_answer_to_question).*", "research"),
    (r"^commonsense_qa_(answer_given_question_without_options|most_suitable_answer|question_answering)$", "research"),
    (r"^dream_(baseline|read_the_following_conversation_and_answer_the_question)$", "research"),
    (r"^duorc_.*_(answer_question|extract_answer|movie_director|question_answering)$", "research"),
    (r"^kilt_tasks_hotpotqa_", "research"),
    (r"^qasc_qa_", "research"),
    (r"^quarel_", "research"),
    (r"^quartz_", "research"),
    (r"^quoref_(?!Guess_Title_For_Context)", "research"),
    (r"^ropes_", "research"),
    (r"^sciq_", "research"),
    (r"^social_i_qa_(Generate_answer|I_was_wondering|Show_choices_and_generate_answer)$", "research"),
    (r"^wiki_qa_Direct_Answer_to_Question$", "research"),
    (r"^wiqa_what_", "research"),
    (r"^(ag_news|amazon_polarity|dbpedia_14|imdb|rotten_tomatoes|trec|yelp_review_full|glue_qqp|paws)_", "analysis"),
    (r"^app_reviews_(categorize|convert)", "analysis"),
    (r"^cnn_dailymail_3_0_0_(2_or_3_sentences|news_card_view|news_stock|news_summary)$", "analysis"),
    (r"^cnn_dailymail_3_0_0_(sum_in_brief|tldr_summary)$", "analysis"),
    (r"^cnn_dailymail_3_0_0_write_an_outline$", "analysis"),
    (r"^gigaword_(TLDR|generate_summary_for_this|in_a_nutshell)$", "analysis"),
    (r"^glue_mrpc_(equivalent|same_thing|want_to_know|paraphrase)$", "analysis"),
    (r"^multi_news_(distill|summarize|summary_scenario|synthesize|what_are_the_key_points)$", "analysis"),
    (r"^samsum_(?!Write_a_dialogue)", "analysis"),
    (r"^wiki_bio_(key_content|what_content)$", "analysis"),
    (r"^xsum_", "analysis"),
    (r"^app_reviews_generate_review$", "creative"),
    (r"^cnn_dailymail_3_0_0_(generate_story|spice_up_story)$", "creative"),
    (r"^duorc_.*_build_story_around_qa$", "creative"),
    (r"^gigaword_(write_an_article|reverse_writing)$", "creative"),
    (r"^multi_news_expand_reverse_task_$", "creative"),
    (r"^samsum_Write_a_dialogue_that_match_this_summary$", "creative"),
    (r"^common_gen_(Given_concepts_type_1|Given_concepts_type_2|Put_together|topic_to_sentence)$", "creative"),
]  # fmt: skip
P3_PER_TEMPLATE = 12
P3_DATASETS = (
    "adversarial_qa", "cnn_dailymail", "common_gen", "commonsense_qa", "kilt_tasks_hotpotqa", "glue_mrpc", "glue_qqp",
    "multi_news", "social_i_qa", "rotten_tomatoes", "wiki_bio", "wiki_qa", "yelp_review_full", "dbpedia_14", "ag_news",
    "amazon_polarity", "app_reviews", "cosmos_qa",
)  # fmt: skip
"""Dataset names with an underscore (the others are the template name's first word): one group each."""

# self-instruct's human-written seed tasks and user-oriented instructions, labelled by hand for lmwatch
# (c coding, r research, w creative/brainstorming, a analysis; unlisted ids fit none of the four).
SEED_LABELS = (
    "0r 6w 7r 8w 10w 11w 12r 13a 16r 17w 18w 19r 20w 21w 25r 26a 28c 29w 30w 31c 32r 33w 37c 39a 41c 42a 43a "
    "44w 46w 47w 48r 49w 50c 54r 55w 57w 59w 60r 61c 62a 63w 64a 67a 69c 72c 73r 74w 75a 76w 78a 79w 80w 81w "
    "82r 84w 85a 86w 88r 89w 90w 92r 93w 94a 95r 99r 100w 102r 103r 104r 107r 111r 112w 114a 115r 116w 118r "
    "119w 122a 123w 124w 125w 127w 128a 129w 131r 132a 133r 135a 137a 138c 139c 140c 141c 142r 143r 146a 147a "
    "148a 149a 150a 151a 152a 154a 155a 156a 157a 158c 159a 160r 161r 162a 163a 164a 165a 166a 167a 168a 169a "
    "170a 171a 172a 173a 174r"
)
USER_LABELS = (
    "1a 5w 7w 9w 10w 12c 13c 14c 16c 17r 24w 25w 26w 27r 28a 29w 30w 31a 32w 33r 34w 37r 38c 39c 40c 44w 49w "
    "50w 52w 53w 54w 55w 56w 57w 58w 59w 60w 61w 62w 63w 65w 66w 67w 68w 71r 72w 73w 74w 75w 76w 79w 80a 85r "
    "86w 87w 89c 90c 92c 93c 94w 96c 98a 101a 102r 110w 111w 113r 115r 116w 118w 119w 124r 125r 126r 127r 128w "
    "130w 135w 137r 138w 139a 151w 154w 157a 158a 159a 160a 162a 163a 164a 165a 166a 168w 169w 171r 175r 176r "
    "177w 178c 179a 181a 183a 184a 186w 190c 191a 194a 195c 197a 198w 199w 202a 204w 205c 206w 207w 208w "
    "210c 211w 212a 214w 215w 223w 225a 226c 227c 230w 231c 232a 234a 235a 237w 238a 242c 243c 244a 245r 246w "
    "247a 249w 251r"
)
LETTERS = {"c": "coding", "r": "research", "w": "creative", "a": "analysis"}
GPTEACHER_CODE_CAP = 1200
ROLEPLAY_CAP = 150
STDLIB_CAP = 500
ALGORITHMS_CAP = 600
TLDR_CAP = 700
NQ_CAP = 800
NQ_DEV = "nq_open/NQ-open.dev.jsonl"
TRUTHFUL_CAP = 400
"""Half of TruthfulQA: all 817 short questions shifted long research prompts (passage questions)
towards analysis on the val split; 400 raised its macro-F1 most."""
TLDR_FRAMES = (
    "How do I {what} with {cmd}?", "{What} with {cmd}, how?", "What's the {cmd} command to {what}?",
    "How can I {what} from the command line?", "Show me how to {what} with `{cmd}`.", "What does `{code}` do?",
    "Explain this command: {code}", "{What} ({cmd})",
)  # fmt: skip
"""tldr pages list what a command does and how; a person asks it in one of these ways (or pastes the
command and asks what it does)."""


class Sources:
    """Reads files of pinned commits from local copies of the repositories."""

    def __init__(self, mirrors: Path) -> None:
        self.mirrors = mirrors

    def git_dir(self, repo: str) -> Path:
        """The copy of `repo`: a bare repository, or the `.git` of a normal one."""
        path = self.mirrors / repo.replace("/", "+") / "repo"
        return path / ".git" if (path / ".git").is_dir() else path

    def read(self, source: tuple[str, str], path: str) -> str:
        repo, commit = source
        git_dir = self.git_dir(repo)
        if not git_dir.exists():
            sys.exit(f"missing {git_dir}: git clone https://github.com/{repo} {git_dir} (needs commit {commit})")
        done = subprocess.run(
            ["git", "--git-dir", str(git_dir), "show", f"{commit}:{path}"], capture_output=True, check=False
        )
        if done.returncode:
            sys.exit(f"{repo}@{commit}:{path}: {done.stderr.decode().strip()}")
        return done.stdout.decode()

    def listing(self, source: tuple[str, str], folder: str) -> list[str]:
        repo, commit = source
        git_dir = self.git_dir(repo)
        out = subprocess.run(
            ["git", "--git-dir", str(git_dir), "ls-tree", "--name-only", f"{commit}:{folder}"],
            capture_output=True,
            check=True,
        )
        return out.stdout.decode().split()


Row = tuple[str, str, str, str]
"""text, task, source, group"""


def natural_instructions(src: Sources) -> Iterator[Row]:
    """One prompt per Super-NaturalInstructions task: its definition, then its positive example's input."""
    info = csv.reader(io.StringIO(src.read(FLAN, "flan/v2/flan_collection_info.csv")))
    category = {row[2]: (row[3], row[1]) for row in info if row[0] == "NIv2" and row[4] == "['English']"}
    module = ast.parse(src.read(FLAN, "flan/v2/constants_niv2.py"))
    meta = next(ast.literal_eval(n.value) for n in module.body if isinstance(n, ast.Assign))
    for name, item in sorted(meta.items()):
        cat, dataset = category.get(name, ("", ""))
        task = NI_CATEGORIES.get(cat)
        if not task:
            continue
        definition = item["definition"].strip()
        example = item.get("positive_examples") or {}
        given = str(example.get("input", "")).strip()
        group = f"ni:{dataset}"
        yield definition, task, "natural-instructions", group
        if given:
            yield f"{definition}\n\n{given}", task, "natural-instructions", group


def p3(src: Sources) -> Iterator[Row]:
    folder = "data/finetuning/t0_train_50k/data_per_template"
    patterns = [(re.compile(p), t) for p, t in P3_TEMPLATES]
    for name in src.listing(SELF_INSTRUCT, folder):
        template = name.removesuffix(".jsonl")
        task = next((t for p, t in patterns if p.search(template)), None)
        if not task:
            continue
        lines = src.read(SELF_INSTRUCT, f"{folder}/{name}").splitlines()
        rng = random.Random(template)
        rng.shuffle(lines)
        for line in lines[:P3_PER_TEMPLATE]:
            yield json.loads(line)["prompt"].strip(), task, "p3", f"p3:{_p3_dataset(template)}"


def _p3_dataset(template: str) -> str:
    for prefix in P3_DATASETS:
        if template.startswith(prefix):
            return prefix
    return template.split("_")[0]


def self_instruct(src: Sources) -> Iterator[Row]:
    for path, labels, source in (
        ("data/seed_tasks.jsonl", SEED_LABELS, "self-instruct-seed"),
        ("human_eval/user_oriented_instructions.jsonl", USER_LABELS, "self-instruct-user"),
    ):
        wanted = {int(x[:-1]): LETTERS[x[-1]] for x in labels.split()}
        for line in src.read(SELF_INSTRUCT, path).splitlines():
            item = json.loads(line)
            number = int(item["id"].rsplit("_", 1)[1])
            if number in wanted:
                given = item["instances"][0]["input"].strip()
                text = f"{item['instruction'].strip()}\n\n{given}" if given else item["instruction"].strip()
                yield text, wanted[number], source, f"{source}:{number % 10}"


def gpteacher(src: Sources) -> Iterator[Row]:
    code = json.loads(src.read(GPTEACHER, "Codegen/codegen-instruct.json"))
    random.Random(1).shuffle(code)
    for i, item in enumerate(code[:GPTEACHER_CODE_CAP]):
        given = item.get("input", "").strip()
        text = f"{item['instruction'].strip()}\n{given}" if given else item["instruction"].strip()
        yield text, "coding", "gpteacher-code", f"gpteacher-code:{i % 10}"
    for i, line in enumerate(src.read(GPTEACHER, "code_seed_tasks.jsonl").splitlines()):
        item = json.loads(line)
        given = item["instances"][0]["input"].strip()
        text = f"{item['instruction'].strip()}\n\n{given}" if given else item["instruction"].strip()
        yield text, "coding", "gpteacher-code-seed", f"gpteacher-code-seed:{i % 5}"
    roles = json.loads(src.read(GPTEACHER, "Roleplay/roleplay-simple-deduped-roleplay-instruct.json"))
    random.Random(2).shuffle(roles)
    for i, item in enumerate(roles[:ROLEPLAY_CAP]):
        yield item["instruction"].strip(), "creative", "gpteacher-roleplay", f"gpteacher-roleplay:{i % 5}"


def bench(src: Sources) -> Iterator[Row]:
    """MT-bench and Vicuna-bench first turns (FastChat), whose categories map onto the four tasks."""
    wanted = {"writing": "creative", "roleplay": "creative", "coding": "coding", "extraction": "analysis",
              "stem": "research", "humanities": "research", "knowledge": "research"}  # fmt: skip
    for name in ("mt_bench", "vicuna_bench"):
        for line in src.read(FASTCHAT, f"fastchat/llm_judge/data/{name}/question.jsonl").splitlines():
            item = json.loads(line)
            task = wanted.get(item["category"])
            if task:
                yield item["turns"][0].strip(), task, name, f"{name}:{item['category']}"


def signatures(code: str) -> Iterator[str]:
    """Each documented public top-level function of a Python module: its `def` line(s) and docstring,
    the "complete this function" style of coding prompt."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return
    lines = code.splitlines()
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef) or node.name.startswith("_"):
            continue
        doc = ast.get_docstring(node, clean=False)
        body = node.body[0]
        if doc and len(doc) >= 40 and isinstance(body, ast.Expr):
            yield "\n".join(lines[node.lineno - 1 : body.end_lineno])


def stdlib_signatures() -> Iterator[Row]:
    """From this Python's standard library (PSF licence)."""
    lib = Path(sysconfig.get_paths()["stdlib"])
    rows = [
        (head, "coding", "python-stdlib", f"python-stdlib:{path.stem}")
        for path in sorted(lib.glob("*.py"))
        for head in signatures(path.read_text(encoding="utf-8", errors="replace"))
    ]
    random.Random(3).shuffle(rows)
    yield from rows[:STDLIB_CAP]


def algorithms(src: Sources) -> Iterator[Row]:
    """TheAlgorithms/Python: documented functions (with doctests), grouped by folder."""
    repo, commit = ALGORITHMS
    git_dir = src.git_dir(repo)
    names = subprocess.run(
        ["git", "--git-dir", str(git_dir), "ls-tree", "-r", "--name-only", commit], capture_output=True, check=True
    ).stdout.decode()
    paths = sorted(p for p in names.split() if p.endswith(".py") and "/" in p and not p.startswith((".", "scripts/")))
    random.Random(4).shuffle(paths)
    rows: list[Row] = []
    for path in paths[:400]:
        folder = path.split("/")[0]
        rows += [
            (head, "coding", "the-algorithms", f"the-algorithms:{folder}")
            for head in signatures(src.read(ALGORITHMS, path))
        ]
    random.Random(5).shuffle(rows)
    yield from rows[:ALGORITHMS_CAP]


def tldr(src: Sources) -> Iterator[Row]:
    """tldr-pages (common commands): each example's description asked as a question about its command."""
    rng = random.Random(6)
    names = src.listing(TLDR, "pages/common")
    rng.shuffle(names)
    rows: list[Row] = []
    for name in names[:600]:
        cmd = name.removesuffix(".md")
        page = src.read(TLDR, f"pages/common/{name}")
        for desc, code in re.findall(r"^- (.+?):?\n\n`([^`]+)`", page, re.MULTILINE)[:2]:
            what = re.sub(r"\[(\w*)\]", r"\1", desc).strip().rstrip(".:")
            if "documentation" in what:
                continue
            code = re.sub(r"\{\{([^}]*)\}\}", r"\1", code)
            frame = rng.choice(TLDR_FRAMES)
            text = frame.format(what=what[0].lower() + what[1:], What=what, cmd=cmd, code=code)
            rows.append((text, "coding", "tldr", f"tldr:{cmd[0]}"))
    yield from rows[:TLDR_CAP]


NQ_FRAMES = (
    "I was wondering: {q}?", "Quick question, {q}?", "My kid asked me {q} and I had no idea. Do you know?",
    "Can you tell me {q}?", "I've always wanted to know {q}.", "Settle an argument for me: {q}?",
    "Do you know {q}? I can't remember.", "I'm curious, {q}?", "Hey, {q}?", "I need to know {q} for a quiz tonight.",
    "{Q}? I looked it up but got confused.", "Help me out here: {q}?",
)  # fmt: skip
"""A third of the NQ questions are asked in one of these ways: a person in a chat says "I", "my"
and "can you" around a plain question of fact, which stays research."""


def natural_questions(src: Sources) -> Iterator[Row]:
    """NQ-open: real search-engine questions (lower case, no question mark), a third as typed, a
    third capitalised with a question mark, a third inside one of `NQ_FRAMES`."""
    lines = src.read(NATURAL_QUESTIONS, NQ_DEV).splitlines()
    rng = random.Random(7)
    rng.shuffle(lines)
    for i, line in enumerate(lines[:NQ_CAP]):
        q = json.loads(line)["question"].strip()
        capital = q[0].upper() + q[1:]
        text = (q, capital + "?", rng.choice(NQ_FRAMES).format(q=q, Q=capital))[i % 3]
        yield text, "research", "natural-questions", f"natural-questions:{i % 10}"


PASSAGE_FRAMES = (
    "{p}\n\nQuestion: {Q}?", "Context: {p}\n\n{Q}?", "Read this and answer the question.\n\n{p}\n\n{Q}?",
    "{Q}? Use this text:\n{p}", "Based on the passage below, {q}?\n\n{p}", "Here is a paragraph: {p}\n{Q}?",
    "Answer from the text. {p} Q: {Q}?", "{p}\n\nFrom the passage, {q}?",
)  # fmt: skip
"""Passage questions: a Wikipedia paragraph and a question it answers, in one of these ways."""


def truthful_qa(src: Sources, known: set[str]) -> Iterator[Row]:
    """`TRUTHFUL_CAP` of TruthfulQA's 817 questions (open questions of fact, many on misconceptions), by
    category; and NQ questions asked about a given Wikipedia paragraph (`PASSAGE_FRAMES`), less those
    whose question NQ-open already holds (`known`), so no question is on both sides of a split."""
    questions = list(csv.DictReader(io.StringIO(src.read(TRUTHFUL, "datasets/TruthfulQA.csv"))))
    random.Random(5).shuffle(questions)
    for row in questions[:TRUTHFUL_CAP]:
        yield row["Question"].strip(), "research", "truthfulqa", "truthfulqa:" + row["Category"].split(":")[0]
    rng = random.Random(11)
    for i, row in enumerate(csv.DictReader(io.StringIO(src.read(TRUTHFUL, "datasets/nq_mini_dataset.csv")))):
        q = row["question"].strip()
        passages = [row[f"answer{k}"].strip() for k in range(1, 6) if row[f"answer{k}"].strip() != "NONE"]
        if passages and q not in known:
            p = " ".join(max(passages, key=len).split()[:150])
            text = rng.choice(PASSAGE_FRAMES).format(p=p, q=q, Q=q[0].upper() + q[1:])
            yield text, "research", "nq-passage", f"nq-passage:{i % 5}"


NL2BASH_CAP = 600
BASH_FRAMES = (
    "Write a bash command to {d}", "Shell one-liner: {d}", "Give me a Linux command that will {d}",
    "{D}. What's the command for that in bash?", "Write a shell script that does this: {D}.",
    "I need a terminal command to {d}", "bash: {d}", "Using find, grep, sed or awk, {d}",
    "Can you write the command line to {d}?", "{D} (Unix shell, one line please)",
)  # fmt: skip
"""NL2Bash's descriptions are what a command does ("Find all .txt files under the current directory");
a person asks for the command in one of these ways, or pastes the description with "bash:"."""
REGEX_CAP = 300
REGEX_FRAMES = (
    "Write a regular expression that matches {d}", "Regex for {d}", "I need a regex to match {d}",
    "Give me a pattern (regex) that finds {d}", "What regular expression would match {d}?",
    "grep pattern for {d}", "Write a Python re pattern matching {d}", "JavaScript regex: {d}",
)  # fmt: skip
EXERCISM_FRAMES = (
    "{t}", "Solve this in {lang}:\n\n{t}", "{t}\n\nWrite it in {lang}.", "Exercise: {t}",
    "Can you help me implement this in {lang}? {t}", "{t}\n\nPlease include tests.",
)  # fmt: skip
"""Exercism's problem descriptions (what to compute, with examples), as typed or with a language;
no language from compose.py is needed, so the description itself has to read as a coding task."""
EXERCISM_LANGS = ("Python", "Rust", "Go", "JavaScript", "Java", "C#", "Haskell", "Elixir", "Ruby", "C++", "Kotlin")


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


def nl2bash(src: Sources) -> Iterator[Row]:
    """NL2Bash: English descriptions of one-line shell commands (from Stack Overflow and tutorials)."""
    lines = sorted({line.strip() for line in src.read(NL2BASH, "data/bash/all.nl").splitlines() if line.strip()})
    rng = random.Random(12)
    rng.shuffle(lines)
    for i, line in enumerate(lines[:NL2BASH_CAP]):
        line = re.sub(r"^\((GNU|BSD|Mac OSX?) specific\) ", "", line).rstrip(".")
        text = rng.choice(BASH_FRAMES).format(d=_lower_first(line), D=line)
        yield text, "coding", "nl2bash", f"nl2bash:{i % 10}"


def regexes(src: Sources) -> Iterator[Row]:
    """NL-RX-Turk (deep-regex): crowd-written descriptions of regular expressions ("lines with the
    string 'dog' at least 2 times"), asked for as a regex."""
    lines = sorted({line.strip() for line in src.read(DEEP_REGEX, "datasets/NL-RX-Turk/src.txt").splitlines()})
    rng = random.Random(13)
    rng.shuffle(lines)
    for i, line in enumerate(x for x in lines[: REGEX_CAP + 1] if x):
        text = rng.choice(REGEX_FRAMES).format(d=_lower_first(line).rstrip("."))
        yield text, "coding", "nl-rx", f"nl-rx:{i % 5}"


def exercism(src: Sources) -> Iterator[Row]:
    """Exercism's problem specifications: each exercise's description or instructions, its first
    paragraphs (headings, notes and links dropped), grouped by exercise name's first letter."""
    repo, commit = EXERCISM
    git_dir = src.git_dir(repo)
    names = subprocess.run(
        ["git", "--git-dir", str(git_dir), "ls-tree", "-r", "--name-only", commit, "exercises"],
        capture_output=True,
        check=True,
    ).stdout.decode()
    docs = {}
    for path in sorted(names.split()):
        parts = path.split("/")
        if len(parts) == 3 and parts[2] in ("description.md", "instructions.md"):
            docs.setdefault(parts[1], path)  # description.md sorts first
    rng = random.Random(14)
    for name, path in sorted(docs.items()):
        body = re.sub(r"~~~~.*?~~~~", "", src.read(EXERCISM, path), flags=re.DOTALL)
        paragraphs = [p.strip() for p in body.split("\n\n") if p.strip() and not p.lstrip().startswith(("#", "["))]
        text = re.sub(r"\[([^\]]+)\]\[[^\]]*\]", r"\1", "\n\n".join(paragraphs[:4]))
        if len(text) > 40:
            frame = rng.choice(EXERCISM_FRAMES)
            yield frame.format(t=text, lang=rng.choice(EXERCISM_LANGS)), "coding", "exercism", f"exercism:{name[0]}"


SHARES = (("test", 0.25), ("val", 0.15))
"""Of each task's rows (after the caps), about this share goes to each held-out split (whole groups)."""
CAPS = {"train": 200, "val": 40, "test": 40}
"""Rows kept per group and split, so no single source task dominates."""


def _rank(group: str) -> str:
    return hashlib.sha256(group.encode()).hexdigest()


def build(src: Sources) -> dict[str, list[Row]]:
    """Dedupe, then deal whole groups (in a fixed pseudo-random order) to test and val until each task
        has its share there, and the rest to train. Sources added later (`truthful_qa`) are dealt on their
        own, in the order they were added, so the splits of the earlier ones stay as they were and
    before/after figures compare."""
    seen: set[str] = set()
    first = _grouped(
        seen,
        (
            natural_instructions(src),
            p3(src),
            self_instruct(src),
            gpteacher(src),
            stdlib_signatures(),
            bench(src),
            algorithms(src),
            tldr(src),
            natural_questions(src),
        ),
    )
    nq_dev = src.read(NATURAL_QUESTIONS, NQ_DEV).splitlines()
    nq = {json.loads(line)["question"].strip() for line in nq_dev}
    splits = _deal(first)
    for later in ((truthful_qa(src, nq),), (nl2bash(src), regexes(src), exercism(src))):
        for split, rows in _deal(_grouped(seen, later)).items():
            splits[split] += rows
    return splits


def _grouped(seen: set[str], sources: tuple[Iterator[Row], ...]) -> dict[str, list[Row]]:
    groups: dict[str, list[Row]] = defaultdict(list)
    for rows in sources:
        for text, task, source, group in rows:
            text = text[:MAX_CHARS]
            key = " ".join(text.lower().split())
            if key not in seen:
                seen.add(key)
                groups[group].append((text, task, source, group))
    return groups


def _deal(groups: dict[str, list[Row]]) -> dict[str, list[Row]]:
    totals = Counter(task for rows in groups.values() for _, task, _, _ in rows[: CAPS["test"]])
    filled: Counter[tuple[str, str]] = Counter()
    splits: dict[str, list[Row]] = defaultdict(list)
    for group in sorted(groups, key=_rank):
        rows = groups[group]
        task = Counter(r[1] for r in rows).most_common(1)[0][0]
        split = next(
            (
                name
                for name, share in SHARES
                if filled[(name, task)] + len(rows[: CAPS[name]]) / 2 <= share * totals[task]
            ),
            "train",
        )
        kept = rows[: CAPS[split]]
        filled.update((split, r[1]) for r in kept)
        splits[split] += kept
    return splits


def write(path: Path, rows: list[Row]) -> None:
    """One {"text", "task", "source", "group"} per line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for text, task, source, group in rows:
            out.write(json.dumps({"text": text, "task": task, "source": source, "group": group}) + "\n")


def mirrors_argument(description: str) -> Path:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--mirrors", type=Path, default=Path("/work/.mirror"))
    return Path(parser.parse_args().mirrors)


def main() -> None:
    splits = build(Sources(mirrors_argument(__doc__.split("\n")[0])))
    for split, rows in sorted(splits.items()):
        write(OUT / f"{split}.jsonl", rows)
        print(split, len(rows), dict(Counter(r[1] for r in rows)), "groups", len({r[3] for r in rows}))


if __name__ == "__main__":
    main()

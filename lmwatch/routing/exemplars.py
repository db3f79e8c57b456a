"""The embedding classifier's exemplar prompts: a few self-written prompts per built-in task, in the
sense of the task definitions of README "How auto decides". None is taken from a public data set
(and none from the evaluation sets lmwatch is judged on)."""

from __future__ import annotations

from collections.abc import Mapping

EXEMPLARS: Mapping[str, tuple[str, ...]] = {
    "coding": (
        "Write a Python function that checks whether a string is a palindrome.",
        "Fix the bug in this JavaScript: the loop never ends when the array is empty.",
        "Explain what this SQL query does and make it faster.",
        "Convert this Bash script to PowerShell.",
        "Why does my Rust code fail to compile with a borrow checker error?",
        "Write an HTML page with a form that posts a name and an email.",
        "Refactor this Java class to use dependency injection.",
        "How do I read a CSV file into a pandas DataFrame and drop empty rows?",
        "Write a unit test for this Go handler.",
        "What does this regular expression match? ^[a-z0-9_-]{3,16}$",
        "Implement binary search in C++ and explain its complexity.",
        "My Docker build fails with 'permission denied' on COPY; how do I fix the Dockerfile?",
    ),
    "research": (
        "Why is the sky blue?",
        "Who was the first person to reach the South Pole?",
        "What causes the seasons on Earth?",
        "How does a vaccine train the immune system?",
        "When did the Roman Empire fall, and why?",
        "What is the difference between a virus and a bacterium?",
        "Context: The company was founded in 1998 in a garage in Menlo Park. Question: where was it founded?",
        "Based on the passage above, what year did the bridge open?",
        "How far is the Moon from the Earth?",
        "What is inflation and how do central banks control it?",
        "Explain how photosynthesis works.",
        "Which country has the largest population in Africa?",
    ),
    "creative": (
        "Write a poem about the sea at night.",
        "Write a short story about a robot who learns to paint.",
        "Give me a list of ideas for a child's birthday party.",
        "Write a movie script scene where two old friends meet again at a train station.",
        "Come up with ten names for a coffee shop.",
        "Write a cover letter for a job as a librarian.",
        "Brainstorm ways to make a small apartment feel bigger.",
        "Write a catchy slogan for a bicycle repair shop.",
        "Write a haiku about autumn leaves.",
        "Write a funny wedding toast for my brother.",
        "Suggest some fun things to do on a rainy weekend.",
        "Write song lyrics about leaving home for the first time.",
    ),
    "analysis": (
        "Classify each of these as a fruit or a vegetable: carrot, apple, leek, plum.",
        "Is the sentiment of this review positive or negative? 'The battery died after two days.'",
        "Summarize this passage in three sentences.",
        "Extract all the dates and the events from the text below into a table.",
        "Which of these animals are mammals: whale, shark, bat, penguin?",
        "From the paragraph, list every person mentioned and their job.",
        "Give me a bullet list of the key points of this article.",
        "Sort these cities by population, largest first: Lyon, Paris, Nice.",
        "Identify which of the following are programming languages and which are snakes: Python, Cobra, Java.",
        "Read this email and tell me what the sender is asking for, in one line.",
        "Group these expenses into categories: rent, bus ticket, groceries, cinema, electricity.",
        "Extract the names of the companies from this news paragraph as a comma-separated list.",
    ),
}

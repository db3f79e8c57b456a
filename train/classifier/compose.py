"""A self-authored training corpus: instruction frames x subjects x passages, for the four tasks.

Everything here was written for lmwatch (MIT, like the rest of the repository). The frames cover
how people phrase each task; passages are shared by the passage-based frames of research
(closed questions), analysis (extraction, summaries, classification) and creative (rewrites as a
poem or story), so the model learns that the instruction, not the passage, decides. The dev set
(data/dev.jsonl) is written by hand separately and shares no frame with this file.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator

LANGS = (
    "Python", "JavaScript", "TypeScript", "Java", "C", "C++", "C#", "Go", "Rust", "Ruby", "PHP", "Kotlin",
    "Swift", "Scala", "Haskell", "R", "Julia", "Perl", "Lua", "Bash", "PowerShell", "Dart", "Elixir", "SQL",
)  # fmt: skip
CODE_TASKS = (
    "reverse a string", "check whether a number is prime", "merge two sorted lists into one sorted list",
    "count the vowels in a string", "find the longest common prefix of a list of strings",
    "remove duplicates from a list while keeping the order", "compute the nth Fibonacci number",
    "validate an email address", "sort a dictionary by its values", "flatten a nested list",
    "find the second largest number in an array", "check if a string is a palindrome",
    "convert a decimal number to binary", "read a CSV file and sum one column", "parse a JSON string",
    "find the most frequent element in a list", "rotate an array by k positions", "transpose a matrix",
    "compute the factorial of a number recursively", "find all anagrams of a word in a list",
    "check whether two strings are anagrams", "return the indices of two numbers that add up to a target",
    "implement binary search on a sorted array", "count the words in a text file",
    "find the greatest common divisor of two integers", "generate all permutations of a list",
    "convert a string to title case", "check whether parentheses in a string are balanced",
    "find the missing number in a list from 1 to n", "compute the sum of the digits of an integer",
    "split a list into chunks of size n", "find the intersection of two lists",
    "calculate the area of a circle given its radius", "convert Celsius to Fahrenheit",
    "find the maximum subarray sum", "check if a year is a leap year", "remove all whitespace from a string",
    "count the occurrences of each character in a string", "find the length of the longest increasing subsequence",
    "return the first non-repeating character in a string", "compute the power set of a set",
    "find the kth smallest element in an unsorted list", "check whether a linked list has a cycle",
    "reverse a linked list", "compute the depth of a binary tree", "serialize a binary tree to a string",
    "download a web page and print its title", "send an HTTP POST request with a JSON body",
    "retry a failing network call with exponential backoff", "read environment variables with defaults",
    "compress a folder into a zip archive", "watch a directory for new files",
    "schedule a job to run every five minutes", "hash a password with a salt", "generate a random password",
    "paginate the results of a REST API", "cache the results of an expensive function",
    "connect to a PostgreSQL database and run a query", "upload a file to an S3 bucket",
    "resize all images in a folder", "parse command-line arguments", "log messages to a rotating file",
    "tokenize a sentence into words", "compute the Levenshtein distance between two strings",
    "find all prime numbers below n with a sieve", "convert a Roman numeral to an integer",
    "shuffle a deck of cards", "implement a stack with push, pop and peek",
    "implement an LRU cache", "detect the language of a file from its extension",
    "sum the even numbers in a list", "find words longer than n characters in a sentence",
    "compute a moving average over a list", "convert a list of tuples into a dictionary",
    "check whether a matrix is symmetric", "count the set bits of an integer",
    "find the median of two sorted arrays", "format a number with thousands separators",
)  # fmt: skip
CODE_THINGS = (
    "a REST API", "a web scraper", "a command-line tool", "a React component", "a unit test", "a Dockerfile",
    "a GitHub Actions workflow", "a database migration", "a Makefile", "a regular expression", "a SQL query",
    "a class", "a decorator", "an async function", "a recursive function", "a lambda", "a shell script",
    "a Kubernetes manifest", "an nginx config", "a CSS rule", "an HTML form", "a GraphQL schema",
)  # fmt: skip
CODE_FRAMES = (
    "Write a {lang} function to {task}.", "Write a function to {task}.", "Write a python function to {task}.",
    "How do I {task} in {lang}?", "How can I {task} using {lang}?", "Create a program that can {task}.",
    "Generate {lang} code to {task}.", "Implement a method in {lang} that will {task}.",
    "Can you show me {lang} code that does this: {task}?", "I need a {lang} snippet to {task}.",
    "Write a script to {task}.", "Give me an efficient algorithm to {task} and its time complexity.",
    "What's the idiomatic way to {task} in {lang}?", "Write {thing} in {lang} that can {task}.",
    "Develop a {lang} class with a method to {task}.", "Write a one-liner in {lang} to {task}.",
    "Write unit tests for a function that should {task}.", "Show how to {task} with the standard library of {lang}.",
    "Construct {thing} to {task}.", "Design {thing} in {lang} that will {task}.",
    "write code to {task}", "{lang}: {task}", "Please help me write {thing} to {task}.",
    "My {lang} program needs to {task}. How do I write that?", "Create a function which can {task}.",
)  # fmt: skip
SNIPPETS = (
    "def add(a, b):\n    return a - b",
    "for i in range(len(items)):\n    if items[i] = target:\n        print(i)",
    "function sum(arr) {\n  let total = 0;\n  for (let i = 0; i <= arr.length; i++) total += arr[i];\n  return total;\n}",
    "SELECT name, COUNT(*) FROM orders GROUP BY customer_id",
    "public static int max(int[] xs) {\n    int m = 0;\n    for (int x : xs) if (x > m) m = x;\n    return m;\n}",
    "x = [1, 2, 3]\ny = x\ny.append(4)\nprint(x)",
    "while True:\n    line = input()\n    if line == 'quit':\n        break\n    print(line.upper())",
    "fn main() {\n    let v = vec![1, 2, 3];\n    let first = &v[0];\n    v.push(4);\n    println!(\"{}\", first);\n}",
    "#include <stdio.h>\nint main() {\n    char *s = malloc(10);\n    strcpy(s, \"hello world\");\n    printf(\"%s\", s);\n}",
    "const data = await fetch(url).json();",
    "import pandas as pd\ndf = pd.read_csv('sales.csv')\ndf.groupby('region').sum()",
    "<div class='card'><h2>Title</h2><p>Body</p></div>",
    "for f in *.txt; do mv $f ${f%.txt}.md; done",
    "class User:\n    def __init__(self, name):\n        name = name",
    "if (x == null) { return; } else if (x.length > 0) { process(x) }",
    "numbers = map(int, input().split())\nprint(sum(numbers) / len(numbers))",
    "$result = mysqli_query($conn, \"SELECT * FROM users WHERE id = \" . $_GET['id']);",
    "let counter = 0;\nbuttons.forEach(b => b.onclick = () => counter++);",
    "def fib(n):\n    return fib(n - 1) + fib(n - 2)",
    "try:\n    value = int(text)\nexcept:\n    pass",
)  # fmt: skip
SNIPPET_FRAMES = (
    "Fix the bug in this code:\n{snippet}", "What does this code do?\n{snippet}",
    "Explain this {lang} code line by line:\n```\n{snippet}\n```", "Why does this throw an error?\n{snippet}",
    "Refactor this to be more readable:\n```\n{snippet}\n```", "Convert this code to {lang}:\n{snippet}",
    "Review this code and suggest improvements:\n{snippet}", "Add type hints and docstrings:\n{snippet}",
    "{snippet}\n\nThis doesn't work, can you help?", "Is there a security problem in this snippet?\n{snippet}",
    "Edit the following code so that it handles empty input:\n{snippet}",
    "Rewrite this code using a list comprehension or the equivalent:\n{snippet}",
    "Translate the following into idiomatic {lang}:\n```\n{snippet}\n```", "Optimize this:\n{snippet}",
    "What is the time complexity of this code?\n{snippet}", "Write tests for this:\n{snippet}",
)  # fmt: skip
SQL_TASKS = (
    "find the top 5 customers by total order value", "list employees who earn more than their manager",
    "count orders per month in 2023", "delete duplicate rows from a table", "find products never ordered",
    "join the users and orders tables and show each user's latest order", "compute a running total of sales",
    "select the second highest salary", "create a table for blog posts with an index on the author",
)  # fmt: skip
SIGNATURES = (
    ("below_zero", "operations: List[int]", "bool", "Given a list of deposit and withdrawal operations on a bank account that starts at zero, return True if the balance ever falls below zero."),
    ("strip_vowels", "text: str", "str", "Return the text with every vowel removed."),
    ("rolling_max", "numbers: List[int]", "List[int]", "Return the running maximum of the numbers seen so far."),
    ("count_upper", "s: str", "int", "Count the upper-case letters at even indices."),
    ("closest_pair", "points: List[float]", "Tuple[float, float]", "Return the two numbers closest to each other, smaller first."),
    ("is_happy", "n: int", "bool", "A happy number reaches 1 when you repeatedly replace it by the sum of the squares of its digits."),
    ("word_lengths", "sentence: str", "Dict[str, int]", "Map each word of the sentence to its length."),
    ("median", "xs: list", "float", "Return the median of the list without sorting it in place."),
    ("encode_shift", "s: str, k: int", "str", "Shift every letter by k positions in the alphabet, wrapping around."),
    ("triangle_area", "a: float, b: float, c: float", "float", "Return the area of a triangle from its three sides, or -1 when they cannot form one."),
)  # fmt: skip

TOPICS = (
    "the ocean", "autumn", "a lighthouse keeper", "a lost dog", "time travel", "the first day of school", "friendship",
    "a haunted house", "the moon", "a dragon who is afraid of fire", "coffee", "a robot learning to love", "rain",
    "a small town baker", "the last tree on Earth", "a detective in Paris", "winter mornings", "a pirate ship",
    "grandmother's kitchen", "a city at night", "a soccer final", "mountains", "a spaceship crew", "a cat",
    "summer vacation", "a broken heart", "the internet", "a wizard's apprentice", "a long train journey",
    "a garden in spring", "my hometown", "a forgotten toy", "a volcano", "a jazz musician", "a desert island",
    "a knight and a princess", "the stars", "learning to ride a bike", "a rainy Sunday", "an old photograph",
)  # fmt: skip
FORMS = (
    "story", "short story", "poem", "haiku", "limerick", "sonnet", "song", "rap verse", "fable", "fairy tale",
    "bedtime story", "scene for a play", "movie script", "screenplay opening", "dialogue", "free verse poem",
    "ballad", "diary entry", "flash fiction piece", "mystery story", "horror story", "children's story",
    "love letter", "monologue", "riddle", "joke", "nursery rhyme", "acrostic poem",
)  # fmt: skip
CREATIVE_FRAMES = (
    "Write a {form} about {topic}.", "Can you write me a {form} about {topic}?", "Compose a {form} on {topic}.",
    "Tell me a {form} about {topic}.", "I want a funny {form} about {topic}.", "Create a {form} featuring {topic}.",
    "Write a {form} from the point of view of {topic}.", "write a {form} about {topic} for my daughter",
    "Write a sad {form} that involves {topic}.", "Please write a {form} inspired by {topic}.",
    "Pretend you are {topic} and write a {form} about your day.", "Make up a {form} about {topic}.",
    "Write the opening paragraph of a novel about {topic}.", "Imagine {topic} could talk. What would it say?",
    "Describe {topic} in vivid, poetic language.", "Write a {form} in the style of Dr. Seuss about {topic}.",
    "Continue this story: Once upon a time there was {topic}...", "Write a {form} that rhymes about {topic}.",
)  # fmt: skip
LETTERS = (
    "Write a letter to my landlord asking to fix the heating.", "Draft a cover letter for a junior designer job.",
    "Write a thank-you note to my teacher.", "Write an email inviting my team to a summer picnic.",
    "Write a wedding toast for my best friend.", "Write a resignation letter that is polite but short.",
    "Write a birthday message for my grandfather who turns 90.", "Write a tweet announcing our new bakery.",
    "Write a product description for a handmade ceramic mug.", "Write an apology letter to a customer.",
    "Write a speech for a high school graduation.", "Write a eulogy for a beloved family dog.",
    "Write a LinkedIn post about finishing my first marathon.", "Write an advertisement for a bicycle repair shop.",
    "Write a catchy slogan for an electric car brand.", "Come up with a tagline for a vegan restaurant.",
    "Write a short bio for a freelance photographer.", "Write a motivational message for a team before a deadline.",
    "Write a persuasive essay on why cities should plant more trees.", "Write a blog post intro about slow travel.",
)  # fmt: skip
BRAIN_THINGS = (
    "names for a coffee shop", "gift ideas for a ten-year-old", "things to do on a rainy day", "ways to save money",
    "blog post ideas about gardening", "names for a golden retriever", "fun team-building activities",
    "date night ideas", "uses for an old t-shirt", "ideas for a science fair project", "healthy snack ideas",
    "ways to stay motivated while working from home", "themes for a birthday party", "names for a fantasy kingdom",
    "startup ideas in education", "ways to make a small apartment feel bigger", "podcast names about history",
    "weekend trips from Chicago", "icebreaker questions for a meeting", "Halloween costume ideas",
    "ways to reduce plastic at home", "fun things to do in Tokyo", "band names", "video game concepts",
    "hobbies to try this year", "ways to celebrate an anniversary", "marketing ideas for a bookstore",
    "vegetarian dinner ideas", "activities for a family reunion", "ways to keep kids busy on a long flight",
)  # fmt: skip
BRAIN_FRAMES = (
    "Give me a list of {thing}.", "Brainstorm {thing}.", "List {n} {thing}.", "What are some {thing}?",
    "Suggest {n} {thing}.", "Come up with {n} {thing}.", "I need some {thing}.", "Can you think of {thing}?",
    "Give me {n} creative {thing}.", "Help me brainstorm {thing}.", "Ideas please: {thing}",
    "What are {n} unusual {thing}?", "Generate a bulleted list of {thing}.", "Think of {n} original {thing}.",
)  # fmt: skip

QUESTIONS = (
    "Why is the sky blue?", "What is photosynthesis?", "Who was Ada Lovelace?", "When did the Berlin Wall fall?",
    "How does a refrigerator work?", "What causes earthquakes?", "Where is Mount Kilimanjaro?",
    "What is the capital of Australia?", "How far is the Moon from the Earth?", "What is inflation?",
    "Why do cats purr?", "How do vaccines work?", "What is the difference between a virus and a bacterium?",
    "Who invented the telephone?", "What language is spoken in Brazil?", "How many bones are in the human body?",
    "What is quantum entanglement?", "Why did the Roman Empire fall?", "What is a black hole?",
    "How do airplanes stay in the air?", "What is the tallest building in the world?", "Who wrote Pride and Prejudice?",
    "What is the boiling point of water at high altitude?", "Is coffee bad for you?", "What does DNA stand for?",
    "How are rainbows formed?", "What was the Renaissance?", "Why do leaves change color in the fall?",
    "What is a mortgage?", "How does the stock market work?", "What is the Electoral College?",
    "Who painted the Mona Lisa?", "What are the rules of cricket?", "How long do elephants live?",
    "What is the largest desert on Earth?", "How does GPS know where I am?", "What is the greenhouse effect?",
    "Why do we have leap years?", "What is the meaning of the word serendipity?", "What is a sonnet?",
    "Who is the current Secretary-General of the UN?", "What year did the Titanic sink?",
    "How is cheese made?", "What is a supernova?", "Why is the ocean salty?", "What does a neurologist do?",
    "What is the origin of Halloween?", "How do bees make honey?", "What is machine learning?",
    "What is the speed of light?", "How do I know if an egg is fresh?", "Why do we dream?",
    "What is a hedge fund?", "Which planet has the most moons?", "What is the history of the bicycle?",
    "Should I learn to play the guitar or the piano first?", "What are the symptoms of dehydration?",
    "How does compound interest work?", "What is the best way to learn a new language?", "What is stoicism?",
    "How did the pyramids get built?", "What is the function of the liver?", "Who discovered penicillin?",
    "What is the difference between weather and climate?", "How do tides work?", "What is a haiku?",
)  # fmt: skip
SUBJECTS = (
    "the French Revolution", "plate tectonics", "the immune system", "blockchain", "the Great Barrier Reef",
    "Marie Curie", "the Silk Road", "nuclear fusion", "the Amazon rainforest", "jazz", "the printing press",
    "the Cold War", "antibiotic resistance", "the Mughal Empire", "black holes", "the water cycle",
    "impressionism", "the Industrial Revolution", "coral bleaching", "the Olympic Games", "sourdough bread",
    "the human brain", "cryptocurrency", "the Apollo program", "volcanoes", "the Magna Carta", "honeybees",
    "the Byzantine Empire", "electric cars", "the Ottoman Empire", "glaciers", "the Beatles", "tea",
)  # fmt: skip
SMALL_TALK = (
    "hello", "hi", "hey there", "hello, how are you?", "good morning", "thanks!", "thank you", "ok", "yes", "no",
    "who are you?", "what can you do?", "are you there?", "hi, can you help me?", "what's up", "cool", "test",
    "how's it going?", "nice to meet you", "good night", "can I ask you something?", "what is your name?",
)  # fmt: skip
RESEARCH_FRAMES = (
    "What is {s}?", "Tell me about {s}.", "Explain {s} to me.", "Give me an overview of {s}.",
    "What is the history of {s}?", "Why is {s} important?", "How does {s} work?", "What do you know about {s}?",
    "Who was involved in {s}?", "When did {s} start?", "Can you explain {s} in simple terms?",
    "What are the main facts about {s}?", "I'm curious about {s}. What should I know?",
    "Explain {s} like I'm five.", "What is the origin of {s}?", "What caused {s}?", "Where did {s} come from?",
)  # fmt: skip

NAMES = ("Maria Lopez", "Kenji Watanabe", "Amara Okafor", "Lars Nilsson", "Priya Raman", "Tomas Novak", "Elena Rossi")
PLACES = ("Valencia", "Osaka", "Lagos", "Uppsala", "Chennai", "Brno", "Turin", "Quebec City", "Tartu", "Cusco")
ORGS = (
    "the Northfield Rowing Club",
    "Helix Robotics",
    "the Blue Heron Festival",
    "Marlow & Sons",
    "the Aster Institute",
)
THINGS = ("the tram line", "the observatory", "the annual regatta", "the library", "the vineyard", "the bridge")


def passage(rng: random.Random) -> tuple[str, dict[str, str]]:
    """A short factual-sounding paragraph about invented people, places and dates, with its facts."""
    f = {
        "name": rng.choice(NAMES),
        "place": rng.choice(PLACES),
        "org": rng.choice(ORGS),
        "thing": rng.choice(THINGS),
        "year": str(rng.randint(1820, 2021)),
        "year2": str(rng.randint(1850, 2023)),
        "n": str(rng.randint(3, 900)),
    }
    sentences = [
        "{org} was founded in {place} in {year} by {name}.",
        "{thing} in {place} opened in {year} and was rebuilt in {year2}.",
        "{name} was born in {place} and studied engineering before joining {org}.",
        "By {year2} it had {n} members and a budget of {n} thousand euros.",
        "The project was funded partly by the city and partly by private donors.",
        "Critics argued that the cost was too high, but attendance grew every year.",
        "In {year2}, a fire destroyed part of the building, which was restored within two years.",
        "Today it is known for its summer concerts, its archive of old maps and its rose garden.",
        "{name} later moved to {place}, where she wrote three books about the region's history.",
        "The river that runs through {place} floods roughly once every decade.",
        "It employs {n} people, most of them part-time, and welcomes visitors from April to October.",
        "The original design was by an architect from Vienna, whose plans are kept in the city museum.",
        "Its main products are bicycles, rowing boats and small wind turbines.",
        "The organisation's motto, 'steady hands', comes from an old fishing song.",
        "Population: {n},000. Area: {n} square kilometres. Founded: {year}.",
    ]
    rng.shuffle(sentences)
    text = " ".join(s.format(**f) for s in sentences[: rng.randint(3, 9)])
    return text, f


CLOSED_QA = (
    "Who founded {org}?", "When was {org} founded?", "Where was {name} born?", "What is {thing} known for?",
    "According to the passage, what happened in {year2}?", "How many people does it employ?",
    "Based on this text, why did critics object?", "Given this paragraph, where did {name} move?",
    "What did {name} study?", "From the text, what are its main products?", "Who designed the original building?",
    "What does the motto refer to?", "In what year was {thing} rebuilt?", "Is {org} still active?",
)  # fmt: skip
EXTRACT = (
    "Extract the names of people mentioned in the passage.", "List all the years mentioned in this text.",
    "From the passage, extract the place names and return them as a comma-separated list.",
    "Pull out every number in the text with what it measures, as a table.",
    "Extract the key facts about {org} in bullet points.", "Using the text, list the dates and the events in JSON.",
    "Identify all the organisations mentioned and output them one per line.",
    "From the passage provided, extract the founder and the founding year in the format 'founder: year'.",
    "Extract the products mentioned in the text.", "Make a bulleted list of the facts about {name} in the text.",
)  # fmt: skip
SUMMARIZE = (
    "Summarize this passage in one sentence.", "Give me a short summary of the text.", "TL;DR of the following?",
    "Summarize the main points as bullet points.", "What is this paragraph about? Summarize briefly.",
    "Condense this into two sentences.", "Write a brief summary of the text for a newsletter.",
    "Summarise the text above.", "Give me the gist of this in plain language.", "Provide a summary of this article.",
)  # fmt: skip
PASSAGE_CREATIVE = (
    "Turn this passage into a poem.", "Rewrite this as a bedtime story for children.",
    "Write a short story inspired by this paragraph.", "Write a song about the place described here.",
)  # fmt: skip
PASSAGE_LAYOUTS: tuple[Callable[[str, str], str], ...] = (
    lambda i, p: f"{i}\n\n{p}",
    lambda i, p: f"{p}\n\n{i}",
    lambda i, p: f"Context: {p}\nQuestion: {i}",
    lambda i, p: f"{i}\nText: {p}",
    lambda i, p: f"{p}\n{i}",
    lambda i, p: f"Read the text below and answer.\n{p}\n{i}",
)

CATEGORIES = (
    ("mammal", "bird", ("dog", "eagle", "whale", "sparrow", "bat", "penguin", "horse", "owl", "dolphin", "parrot")),
    ("fruit", "vegetable", ("apple", "carrot", "banana", "broccoli", "mango", "spinach", "cherry", "potato", "kiwi")),
    ("string", "percussion", ("violin", "drum", "cello", "xylophone", "guitar", "tambourine", "harp", "cymbal")),
    ("country", "city", ("France", "Tokyo", "Brazil", "Nairobi", "Canada", "Lima", "Egypt", "Oslo", "India")),
    ("team sport", "individual sport", ("football", "tennis", "basketball", "golf", "rugby", "archery", "hockey")),
    ("metal", "non-metal", ("iron", "oxygen", "copper", "carbon", "gold", "sulfur", "zinc", "neon", "silver")),
    ("programming language", "snake", ("Python", "cobra", "Java", "mamba", "Ruby", "viper", "Go", "boa", "Rust")),
    ("renewable", "non-renewable", ("solar", "coal", "wind", "natural gas", "hydro", "oil", "geothermal")),
    ("land animal", "sea animal", ("tiger", "octopus", "camel", "shark", "rabbit", "jellyfish", "fox", "squid")),
    ("novel", "film", ("Moby Dick", "Jaws", "Dracula", "Titanic", "Emma", "Inception", "Ulysses", "Up")),
)
CLASSIFY_FRAMES = (
    "Classify each of the following as a {a} or a {b}: {items}", "Which of these are {a}s? {items}",
    "Identify which of these is a {a} and which is a {b}: {items}", "Tell me whether each is a {a} or {b}: {items}",
    "Sort these into {a}s and {b}s: {items}", "Which is a {a}, {x} or {y}?", "Is {x} a {a} or a {b}?",
    "Categorize the following by whether they are a {a}: {items}", "Group these items: {items}. Categories: {a}, {b}.",
    "Label each item as {a} or {b}.\n{items}", "From this list, pick out the {a}s: {items}",
)  # fmt: skip
REVIEWS = (
    "The food was cold and the waiter ignored us for half an hour.", "Absolutely loved this phone, the battery lasts days!",
    "The movie was fine, nothing special.", "Worst customer service I have ever experienced.",
    "This book changed how I think about work.", "The hotel was clean but the walls were paper thin.",
    "I want my money back, the shoes fell apart in a week.", "Delightful little cafe with great pastries.",
)  # fmt: skip
REVIEW_FRAMES = (
    "Is this review positive or negative? \"{r}\"", "Classify the sentiment of this tweet: {r}",
    "What is the sentiment of the following text? {r}", "Rate the tone of this comment as positive, neutral or negative: {r}",
    "Detect the emotion in this sentence: {r}", "Label this customer feedback by sentiment and topic: {r}",
)  # fmt: skip
DATA_FRAMES = (
    "Analyze this sales data and tell me the trend: Q1 {a}, Q2 {b}, Q3 {c}, Q4 {d}.",
    "Here are monthly visitors: Jan {a}, Feb {b}, Mar {c}. What is the growth rate?",
    "Compare these two options and give the pros and cons: renting at ${a} a month or buying at ${b}k.",
    "Calculate the average and the median of {a}, {b}, {c}, {d}.",
    "Given revenue of {a} and costs of {b}, what is the profit margin?",
    "Evaluate this survey result: {a} yes, {b} no, {c} undecided. What can we conclude?",
    "Which of these products performed best? A: {a} units, B: {b} units, C: {c} units.",
    "Find the outlier in this data set: {a}, {b}, {c}, {d}, {a}0.",
    "| month | sales |\n|---|---|\n| Jan | {a} |\n| Feb | {b} |\n| Mar | {c} |\nWhat does this table show?",
)  # fmt: skip


def _items(rng: random.Random, pool: tuple[str, ...]) -> str:
    picked = rng.sample(pool, rng.randint(3, min(7, len(pool))))
    return rng.choice((", ", "; ", "\n")).join(picked)


def _coding(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.5:
        frame = rng.choice(CODE_FRAMES)
        return frame.format(lang=rng.choice(LANGS), task=rng.choice(CODE_TASKS), thing=rng.choice(CODE_THINGS))
    if kind < 0.75:
        snippet = rng.choice(SNIPPETS)
        return rng.choice(SNIPPET_FRAMES).format(snippet=snippet, lang=rng.choice(LANGS))
    if kind < 0.85:
        return rng.choice(("Write a SQL query to {t}.", "SQL: {t}", "How would I {t} in SQL?")).format(
            t=rng.choice(SQL_TASKS)
        )
    name, args, ret, doc = rng.choice(SIGNATURES)
    if kind < 0.9:  # bare code, no instruction: a completion prompt or a pasted snippet
        return rng.choice((f"def {name}({args}) -> {ret}:\n    pass", rng.choice(SNIPPETS), f"def {name}():\n"))
    return f'from typing import List, Tuple, Dict\n\ndef {name}({args}) -> {ret}:\n    """ {doc}\n    """\n'


def _research(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.05:
        return rng.choice(SMALL_TALK)
    if kind < 0.4:
        return rng.choice(QUESTIONS)
    if kind < 0.7:
        return rng.choice(RESEARCH_FRAMES).format(s=rng.choice(SUBJECTS))
    text, facts = passage(rng)
    return rng.choice(PASSAGE_LAYOUTS)(rng.choice(CLOSED_QA).format(**facts), text)


def _creative(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.45:
        return rng.choice(CREATIVE_FRAMES).format(form=rng.choice(FORMS), topic=rng.choice(TOPICS))
    if kind < 0.6:
        return rng.choice(LETTERS)
    if kind < 0.92:
        n = rng.choice(("three", "five", "ten", "5", "7", "10", "a few", "some"))
        return rng.choice(BRAIN_FRAMES).format(thing=rng.choice(BRAIN_THINGS), n=n)
    text, _ = passage(rng)
    return rng.choice(PASSAGE_LAYOUTS)(rng.choice(PASSAGE_CREATIVE), text)


def _analysis(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.3:
        a, b, pool = rng.choice(CATEGORIES)
        x, y = rng.sample(pool, 2)
        return rng.choice(CLASSIFY_FRAMES).format(a=a, b=b, items=_items(rng, pool), x=x, y=y)
    if kind < 0.4:
        return rng.choice(REVIEW_FRAMES).format(r=rng.choice(REVIEWS))
    if kind < 0.5:
        nums = {k: str(rng.randint(10, 990)) for k in "abcd"}
        return rng.choice(DATA_FRAMES).format(**nums)
    text, facts = passage(rng)
    instruction = rng.choice(EXTRACT if kind < 0.75 else SUMMARIZE).format(**facts)
    return rng.choice(PASSAGE_LAYOUTS)(instruction, text)


MAKERS: dict[str, Callable[[random.Random], str]] = {
    "coding": _coding,
    "research": _research,
    "creative": _creative,
    "analysis": _analysis,
}


def composed(per_task: int, seed: int = 14) -> Iterator[tuple[str, str]]:
    """`per_task` distinct (text, task) pairs per task, reproducibly."""
    rng = random.Random(seed)
    for task, make in MAKERS.items():
        seen: set[str] = set()
        tries = 0
        while len(seen) < per_task and tries < per_task * 20:
            tries += 1
            text = make(rng)
            if rng.random() < 0.3:
                text = text.lower() if rng.random() < 0.5 else text.rstrip(".?")
            if text not in seen:
                seen.add(text)
                yield text, task

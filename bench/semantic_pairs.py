"""Question triples for measuring the semantic cache: (question, a paraphrase that asks the same,
a question on the same topic that asks something else). Written for lmwatch by its maintainers
(no public data set), released with it under the project's licence.

Each row gives a paraphrase pair (should hit) and a same-topic pair (must not hit); pairing questions
of different rows gives unrelated pairs (must not hit either).
"""

from __future__ import annotations

TRIPLES: list[tuple[str, str, str]] = [
    ("What is the capital of France?", "Which city is the capital of France?", "What is the capital of Spain?"),
    (
        "How do I reverse a list in Python?",
        "What's the way to reverse a Python list?",
        "How do I sort a list in Python?",
    ),
    ("How tall is Mount Everest?", "What is the height of Mount Everest?", "How tall is K2?"),
    ("Who wrote Pride and Prejudice?", "Who is the author of Pride and Prejudice?", "Who wrote Wuthering Heights?"),
    ("How many days are in a leap year?", "A leap year has how many days?", "How many weeks are in a year?"),
    (
        "What is the boiling point of water at sea level?",
        "At sea level, at what temperature does water boil?",
        "What is the freezing point of water?",
    ),
    (
        "How do I read a file line by line in Python?",
        "In Python, how can I iterate over the lines of a file?",
        "How do I write a line to a file in Python?",
    ),
    (
        "What does HTTP status 404 mean?",
        "What is the meaning of an HTTP 404 response?",
        "What does HTTP status 500 mean?",
    ),
    (
        "How do I undo the last git commit?",
        "What is the command to revert my most recent git commit?",
        "How do I push a git commit to a remote?",
    ),
    ("What is the speed of light?", "How fast does light travel?", "What is the speed of sound?"),
    (
        "Translate 'good morning' into German.",
        "How do you say 'good morning' in German?",
        "Translate 'good night' into German.",
    ),
    (
        "How many legs does a spider have?",
        "What is the number of legs on a spider?",
        "How many legs does an insect have?",
    ),
    ("What is 15 percent of 200?", "Calculate 15% of 200.", "What is 25 percent of 200?"),
    ("How do I center a div in CSS?", "What's the CSS to center a div?", "How do I hide a div in CSS?"),
    ("What causes the seasons on Earth?", "Why does Earth have seasons?", "What causes tides on Earth?"),
    ("Who painted the Mona Lisa?", "Which artist painted the Mona Lisa?", "Who painted The Starry Night?"),
    (
        "How do I convert a string to an integer in JavaScript?",
        "In JavaScript, how can I turn a string into an integer?",
        "How do I convert an integer to a string in JavaScript?",
    ),
    (
        "What is the largest planet in the solar system?",
        "Which planet is the biggest in our solar system?",
        "What is the smallest planet in the solar system?",
    ),
    (
        "How long should I boil an egg for a soft yolk?",
        "For a runny yolk, how many minutes do I boil an egg?",
        "How long should I boil pasta?",
    ),
    (
        "What is the difference between TCP and UDP?",
        "How do TCP and UDP differ?",
        "What is the difference between HTTP and HTTPS?",
    ),
    ("Give me a synonym for happy.", "What is another word for happy?", "Give me an antonym for happy."),
    (
        "How do I list all running processes on Linux?",
        "What command shows every running process in Linux?",
        "How do I kill a process on Linux?",
    ),
    ("When did World War II end?", "In what year did the Second World War end?", "When did World War I end?"),
    ("What is photosynthesis?", "Can you explain what photosynthesis is?", "What is cellular respiration?"),
    (
        "How do I make a GET request with curl?",
        "What's the curl command for a GET request?",
        "How do I make a POST request with curl?",
    ),
    ("What is the square root of 144?", "What number squared gives 144?", "What is the square root of 169?"),
    ("How many continents are there?", "What is the number of continents on Earth?", "How many oceans are there?"),
    ("What is a closure in JavaScript?", "Explain closures in JavaScript.", "What is a promise in JavaScript?"),
    (
        "Who was the first person to walk on the moon?",
        "Which astronaut first walked on the Moon?",
        "Who was the first person in space?",
    ),
    (
        "How do I create a virtual environment in Python?",
        "What's the command to make a Python virtualenv?",
        "How do I delete a virtual environment in Python?",
    ),
    (
        "What is the chemical symbol for gold?",
        "Which element symbol stands for gold?",
        "What is the chemical symbol for silver?",
    ),
    ("How can I improve my sleep?", "What are ways to sleep better?", "How can I improve my memory?"),
    ("What is the population of Japan?", "How many people live in Japan?", "What is the population of China?"),
    ("How do I join two tables in SQL?", "What is the SQL for joining two tables?", "How do I delete a table in SQL?"),
    (
        "Summarize the plot of Romeo and Juliet.",
        "Give me a short summary of Romeo and Juliet's story.",
        "Summarize the plot of Hamlet.",
    ),
    (
        "What is the freezing point of water in Fahrenheit?",
        "At how many degrees Fahrenheit does water freeze?",
        "What is the boiling point of water in Fahrenheit?",
    ),
    (
        "How do I check my Python version?",
        "Which command prints the installed Python version?",
        "How do I upgrade my Python version?",
    ),
    ("What does DNA stand for?", "What is the full form of DNA?", "What does RNA stand for?"),
    ("How many bytes are in a kilobyte?", "A kilobyte contains how many bytes?", "How many bytes are in a megabyte?"),
    (
        "What is the tallest building in the world?",
        "Which building is the world's tallest?",
        "What is the oldest building in the world?",
    ),
    ("How do I rename a file in Linux?", "What command renames a file on Linux?", "How do I copy a file in Linux?"),
    ("Why is the sky blue?", "What makes the sky look blue?", "Why is the sunset red?"),
    ("What is a prime number?", "Define a prime number.", "What is a composite number?"),
    (
        "How do I merge two dictionaries in Python?",
        "What's the way to combine two dicts in Python?",
        "How do I sort a dictionary by value in Python?",
    ),
    ("Who discovered penicillin?", "Which scientist discovered penicillin?", "Who discovered insulin?"),
    (
        "What is the longest river in the world?",
        "Which river is the longest on Earth?",
        "What is the deepest lake in the world?",
    ),
    (
        "How do I install Docker on Ubuntu?",
        "What are the steps to set up Docker on Ubuntu?",
        "How do I uninstall Docker on Ubuntu?",
    ),
    ("What is inflation?", "Explain what inflation means in economics.", "What is deflation?"),
    ("How many hours are in a week?", "What is the number of hours in one week?", "How many minutes are in a day?"),
    (
        "What is the main ingredient of guacamole?",
        "Guacamole is mostly made from what?",
        "What is the main ingredient of hummus?",
    ),
    ("How do I exit vim?", "What's the way to quit the vim editor?", "How do I save a file in vim?"),
    (
        "What language is spoken in Brazil?",
        "Which language do people in Brazil speak?",
        "What language is spoken in Argentina?",
    ),
    ("What is machine learning?", "Can you explain machine learning?", "What is deep learning?"),
    (
        "How do I find the length of a string in Python?",
        "In Python, how do I get a string's length?",
        "How do I split a string in Python?",
    ),
    ("What year did the Titanic sink?", "When did the Titanic go down?", "What year was the Titanic built?"),
    (
        "How far is the Moon from Earth?",
        "What is the distance between the Earth and the Moon?",
        "How far is the Sun from Earth?",
    ),
    ("Write a haiku about autumn.", "Compose a haiku on the theme of autumn.", "Write a haiku about winter."),
    (
        "What is the difference between a list and a tuple in Python?",
        "How does a Python list differ from a tuple?",
        "What is the difference between a list and a set in Python?",
    ),
    (
        "How do I lower my blood pressure?",
        "What are ways to reduce high blood pressure?",
        "How do I lower my cholesterol?",
    ),
    (
        "What is the currency of the United Kingdom?",
        "Which currency is used in the UK?",
        "What is the currency of Switzerland?",
    ),
    (
        "How do I generate a random number in Python?",
        "What's the way to get a random number in Python?",
        "How do I round a number in Python?",
    ),
    ("Who invented the telephone?", "Which inventor created the telephone?", "Who invented the light bulb?"),
    (
        "What is the area of a circle with radius 3?",
        "Compute the area of a circle whose radius is 3.",
        "What is the circumference of a circle with radius 3?",
    ),
    (
        "How do I see disk usage on Linux?",
        "Which Linux command shows how much disk space is used?",
        "How do I see memory usage on Linux?",
    ),
    (
        "What is the meaning of the word 'ephemeral'?",
        "Define the word ephemeral.",
        "What is the meaning of the word 'eternal'?",
    ),
    (
        "How many players are on a soccer team?",
        "How many players does a football side field in soccer?",
        "How many players are on a basketball team?",
    ),
    ("What is Kubernetes?", "Explain what Kubernetes is.", "What is Terraform?"),
    ("How do I make pancakes?", "What's a recipe for pancakes?", "How do I make waffles?"),
    (
        "What is the hottest planet in the solar system?",
        "Which planet in our solar system is the hottest?",
        "What is the coldest planet in the solar system?",
    ),
    (
        "How do I remove duplicates from a list in Python?",
        "In Python, how can I deduplicate a list?",
        "How do I count duplicates in a list in Python?",
    ),
    (
        "What is the capital of Australia?",
        "Which city is Australia's capital?",
        "What is the largest city in Australia?",
    ),
    (
        "How do I take a screenshot on a Mac?",
        "What's the shortcut for a screenshot on macOS?",
        "How do I record the screen on a Mac?",
    ),
    ("What is an API?", "Explain what an API is.", "What is an SDK?"),
    (
        "Convert 100 degrees Fahrenheit to Celsius.",
        "What is 100 °F in Celsius?",
        "Convert 100 degrees Celsius to Fahrenheit.",
    ),
    (
        "How do I start a conversation with a stranger?",
        "What are good ways to talk to someone I don't know?",
        "How do I end a conversation politely?",
    ),
    ("What does a mitochondrion do?", "What is the function of mitochondria?", "What does a ribosome do?"),
    (
        "How do I set an environment variable in bash?",
        "What's the bash syntax to set an environment variable?",
        "How do I unset an environment variable in bash?",
    ),
    ("Who is the Greek god of the sea?", "Which Greek god rules the sea?", "Who is the Greek god of war?"),
    (
        "What is the time complexity of binary search?",
        "How fast is binary search in big-O terms?",
        "What is the time complexity of bubble sort?",
    ),
    ("How do I tie a tie?", "What are the steps to knot a necktie?", "How do I tie a bow tie?"),
]

#!/usr/bin/env python3
"""Generates the memory-recall benchmark: a long multi-session conversation with planted facts
and, in later sessions, questions about them.

    python3 scripts/memory_recall_data.py > examples/memory-chat/data/recall.jsonl

Deterministic (seeded). Each line is one JSON object:
  {"kind": "turn", "session": "s07", "role": "user"|"assistant", "text": ..., "fact": "f12"?}
  {"kind": "question", "session": "s38", "text": ..., "fact": "f12"}
A turn that plants a fact carries its id; a question names the fact whose planting turn a
retriever should return. Questions paraphrase the fact (a sibling for a sister, a car for
where it is parked), and the filler talks around the same words, so neither keyword nor
vector retrieval gets it for free.
"""
import json
import random

SEED = 20261203
SESSIONS = 40
FILLER_TURNS = 10

# (fact said by the user, the question asked sessions later)
FACTS = [
    ("My sister Ingrid lives in Bergen and teaches chemistry.", "Where does my sibling live?"),
    ("I parked the car on level 4, spot B12, at the airport.", "Which spot did I leave my vehicle in?"),
    ("My dentist appointment is on the third of March at 9am.", "When am I seeing the dentist?"),
    ("I'm allergic to penicillin, it gives me a rash.", "Which antibiotic must I avoid?"),
    ("Our wifi password at the cabin is sunflower42.", "What's the wireless key for the cabin?"),
    ("My daughter Lea turns seven on the 14th of June.", "How old will my kid be this summer?"),
    ("I keep the spare house key under the blue flower pot.", "Where is the extra key hidden?"),
    ("My employee number at work is 88172.", "What is my staff ID?"),
    ("The plumber who fixed our boiler is called Tomasz.", "Who repaired the heating?"),
    ("I ran my first marathon in Valencia in 3 hours 52 minutes.", "What was my time in the race in Spain?"),
    ("My favourite tea is a smoky lapsang souchong.", "Which drink do I like best?"),
    ("We adopted a grey cat named Miso last spring.", "What's the name of our pet?"),
    ("My passport expires in November 2027.", "When do I need to renew my travel document?"),
    ("I'm learning Portuguese with a tutor on Thursdays.", "Which language am I studying?"),
    ("My landlord is Mrs Okafor and rent is due on the 5th.", "Who do I pay rent to?"),
    ("I booked the hotel in Kyoto under my partner's surname, Varga.", "What name is the Japan reservation under?"),
    ("The bike lock combination is 3-1-7-9.", "What's the code for my bicycle padlock?"),
    ("My blood type is O negative.", "What blood group am I?"),
    ("I bought the blue sofa from a shop called Linden & Co.", "Where did the couch come from?"),
    ("My grandmother's lasagne recipe uses nutmeg in the bechamel.", "What spice goes in grandma's white sauce?"),
    ("I'm vegetarian but I still eat eggs and cheese.", "Do I eat meat?"),
    ("My brother Paul works as a paramedic in Leeds.", "What does Paul do for a living?"),
    ("The car's next service is due at 60,000 kilometres.", "At what mileage is the vehicle's maintenance due?"),
    ("I play the cello in a community orchestra on Tuesdays.", "Which instrument do I play?"),
    ("Our anniversary is the 22nd of September.", "When is our wedding anniversary?"),
    ("I stored the tax documents in the grey filing cabinet, second drawer.", "Where are my tax papers?"),
    ("My manager's name is Priya Raman.", "Who is my boss?"),
    ("I can't drink coffee after 2pm or I don't sleep.", "Why should I skip the afternoon espresso?"),
    ("The kids' school is St. Anne's on Harbour Road.", "Which school do my children attend?"),
    ("I donated blood for the tenth time in January.", "How many times have I given blood?"),
]

TOPICS = {
    "cooking": ["recipe", "oven", "garlic", "pasta", "dinner", "spice", "sauce", "bake"],
    "travel": ["flight", "hotel", "airport", "train", "luggage", "booking", "city", "trip"],
    "work": ["meeting", "deadline", "project", "email", "report", "colleague", "office", "team"],
    "health": ["sleep", "exercise", "doctor", "running", "diet", "water", "stretching", "rest"],
    "home": ["garden", "kitchen", "sofa", "heating", "paint", "shelf", "window", "key"],
    "family": ["birthday", "school", "weekend", "holiday", "gift", "party", "visit", "kids"],
    "money": ["budget", "savings", "rent", "insurance", "bank", "bill", "tax", "pension"],
    "hobbies": ["music", "guitar", "book", "film", "chess", "photography", "hiking", "language"],
}

USER_TEMPLATES = [
    "Can you give me a tip about {a} and {b}?",
    "I was thinking about the {a} again, any ideas for the {b}?",
    "What's a good way to plan the {a} this week?",
    "Remind me why {a} matters when it comes to {b}.",
    "I'm a bit stressed about the {a}, and the {b} isn't helping.",
    "Do you know anything interesting about {a}?",
]
ASSISTANT_TEMPLATES = [
    "Start small with the {a}: set one goal, then think about the {b}.",
    "A common approach is to keep the {a} simple and review the {b} later.",
    "Many people find it helps to write the {a} down before the {b}.",
    "Try giving the {a} a fixed time each day; the {b} usually follows.",
]


def filler(rng):
    topic = rng.choice(sorted(TOPICS))
    a, b = rng.sample(TOPICS[topic], 2)
    return rng.choice(USER_TEMPLATES).format(a=a, b=b), rng.choice(ASSISTANT_TEMPLATES).format(a=a, b=b)


def main():
    rng = random.Random(SEED)
    # Facts are planted in the first 30 sessions; each is asked about at least 5 sessions
    # later, somewhere in the last 10.
    plant_at = {i: rng.randrange(0, 30) for i in range(len(FACTS))}
    ask_at = {i: rng.randrange(max(plant_at[i] + 5, 30), SESSIONS) for i in range(len(FACTS))}
    for s in range(SESSIONS):
        session = f"s{s:02d}"
        turns = [("filler", None) for _ in range(FILLER_TURNS)]
        for i in sorted(plant_at):
            if plant_at[i] == s:
                turns.insert(rng.randrange(len(turns) + 1), ("fact", i))
        for kind, i in turns:
            if kind == "fact":
                fact = FACTS[i][0]
                print(json.dumps({"kind": "turn", "session": session, "role": "user", "text": fact, "fact": f"f{i:02d}"}))
                print(json.dumps({"kind": "turn", "session": session, "role": "assistant", "text": "Got it, I'll remember that."}))
            else:
                q, a = filler(rng)
                print(json.dumps({"kind": "turn", "session": session, "role": "user", "text": q}))
                print(json.dumps({"kind": "turn", "session": session, "role": "assistant", "text": a}))
        for i in sorted(ask_at):
            if ask_at[i] == s:
                print(json.dumps({"kind": "question", "session": session, "text": FACTS[i][1], "fact": f"f{i:02d}"}))


if __name__ == "__main__":
    main()

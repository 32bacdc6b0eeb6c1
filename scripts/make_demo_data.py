"""Write the built-in demo dataset: support tickets routed to one of five queues.

Every ticket is composed by this script from hand-written phrase lists with a fixed seed,
so the data is ours, reproducible, and free of anyone's real customers. Run it to rebuild
`tunelab/demo/tickets-{train,validation,test}.jsonl`; a test checks the shipped files match.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "tunelab" / "demo"
SEED = 20261125
SIZES = {"train": 400, "validation": 100, "test": 120}

PRODUCTS = ["Nimbus router", "Aero headset", "Pulse watch", "Orbit speaker", "Lumen lamp",
            "Vector keyboard", "Drift scooter", "Halo camera"]  # fmt: skip
PLANS = ["Basic", "Plus", "Pro", "Team", "Enterprise"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]  # fmt: skip
OPENERS = [
    "",
    "",
    "Hi, ",
    "Hello, ",
    "Hey team, ",
    "Good morning, ",
    "Urgent: ",
    "Quick question: ",
]
CLOSERS = ["", "", " Thanks.", " Thank you!", " Please help.", " Cheers.", " Any update?",
           " This is the second time I'm writing."]  # fmt: skip

# Queue → ticket bodies. Each body may use {product}, {plan}, {order}, {amount}, {month}, {days}.
QUEUES: dict[str, list[str]] = {
    "billing": [
        "I was charged twice for my {plan} plan this month.",
        "my invoice for {month} shows ${amount} but I expected less.",
        "the card on file expired, how do I update my payment method?",
        "why did my bill go up by ${amount} after the renewal?",
        "please send me a VAT invoice for order {order}.",
        "I see an unknown charge of ${amount} on my statement.",
        "can I switch from monthly to yearly billing and get the discount?",
        "my payment failed but the money left my bank account.",
        "I cancelled in {month} but you still billed me ${amount}.",
        "the receipt for order {order} has the wrong company name.",
    ],
    "technical": [
        "the {product} keeps disconnecting from wifi every few minutes.",
        "after the firmware update my {product} will not turn on.",
        "the app crashes when I open the settings page.",
        "my {product} shows error code E{days}0 and blinks red.",
        "sync between the app and the {product} stopped working.",
        "the {product} battery drains in {days} hours even when idle.",
        "bluetooth pairing with the {product} fails on my phone.",
        "the dashboard loads forever and then shows a blank screen.",
        "the {product} makes a buzzing noise since yesterday.",
        "notifications from the {product} arrive hours late.",
    ],
    "shipping": [
        "order {order} still says processing after {days} days.",
        "the tracking number for order {order} does not work.",
        "my {product} arrived with a cracked box and a dented side.",
        "the courier left my parcel at the wrong address.",
        "can you ship order {order} to my office instead?",
        "I received someone else's package instead of my {product}.",
        "order {order} was marked delivered but nothing came.",
        "how long does delivery to Canada take for the {product}?",
        "one item from order {order} is missing from the box.",
        "I need to return the {product}, where do I send it?",
    ],
    "account": [
        "I can't log in, the password reset email never arrives.",
        "please change the email address on my account.",
        "my two-factor codes stopped working after I got a new phone.",
        "someone else may have accessed my account last night.",
        "how do I delete my account and all my data?",
        "I want to merge my two accounts into one.",
        "my account got locked after too many login attempts.",
        "please add a second admin user to our account.",
        "I need to change the name shown on my profile.",
        "I never received the verification link to activate my account.",
    ],
    "sales": [
        "we want {days}0 seats of the {plan} plan, can you send a quote?",
        "is there an education discount for the {plan} plan?",
        "can we get a demo of the Enterprise features for our team?",
        "what is the price difference between {plan} and Pro?",
        "do you offer volume pricing for {days}0 {product} units?",
        "we are a nonprofit, do you have special pricing?",
        "I'd like to upgrade our team from {plan} to Enterprise.",
        "can your sales team call me about a {days}-year contract?",
        "do you resell the {product} through partners in Europe?",
        "is a free trial of the {plan} plan available for companies?",
    ],
}
TYPOS = {"the": "teh", "receive": "recieve", "please": "pls", "your": "ur", "account": "acount"}


HELD_OUT_BODIES = 2
"""The last bodies of each queue appear only in the test split: new phrasings to generalise to."""


def make_ticket(rng: random.Random, queue: str, split: str) -> str:
    bodies = QUEUES[queue] if split == "test" else QUEUES[queue][:-HELD_OUT_BODIES]
    body = rng.choice(bodies).format(
        product=rng.choice(PRODUCTS),
        plan=rng.choice(PLANS),
        order=f"#{rng.randint(10000, 99999)}",
        amount=rng.choice([9, 12, 19, 29, 49, 99, 149]),
        month=rng.choice(MONTHS),
        days=rng.randint(2, 9),
    )
    opener = rng.choice(OPENERS)
    text = opener + (body[0].upper() + body[1:] if not opener or opener.endswith(": ") else body)
    text += rng.choice(CLOSERS)
    if rng.random() < 0.15:
        word = rng.choice(list(TYPOS))
        text = text.replace(f" {word} ", f" {TYPOS[word]} ", 1)
    return text


def build() -> dict[str, list[dict[str, str]]]:
    rng = random.Random(SEED)
    queues = sorted(QUEUES)
    seen: set[str] = set()
    splits: dict[str, list[dict[str, str]]] = {}
    for split, size in SIZES.items():
        rows: list[dict[str, str]] = []
        while len(rows) < size:
            queue = queues[len(rows) % len(queues)]
            ticket = make_ticket(rng, queue, split)
            if ticket in seen:
                continue
            seen.add(ticket)
            rows.append({"id": f"{split}-{len(rows):03d}", "ticket": ticket, "queue": queue})
        rng.shuffle(rows)
        splits[split] = rows
    return splits


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for split, rows in build().items():
        path = OUT / f"tickets-{split}.jsonl"
        with path.open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"wrote {path} ({len(rows)} rows)")


if __name__ == "__main__":
    main()

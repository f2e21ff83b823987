"""Writes ``data/paraphrase_sample/{train,dev}.tsv``: the embedded paraphrase sample, generated
from the templates and word lists below (all written for this project; every name, place and
"fact" is invented). Deterministic: the same files for the same arguments.

    python scripts/make_paraphrase_sample.py                  # 800 train / 200 dev pairs
    python scripts/make_paraphrase_sample.py --train 400 --dev 100 --out /tmp/sample

Each pair describes one short news-style event twice. Paraphrase (``1``): the same facts in a
different wording. Not a paraphrase (``0``), in about MRPC's 1:2 share: one fact changed (a
number, place, day, month, team or company) with or without a change of wording, a
contradicting event in close wording (``rose``/``fell``, ``arrested``/``released``), the roles
swapped (``X beat Y``/``Y beat X``), or a different event sharing a name or a place. A pair
never appears twice, nor in both files.
"""
import argparse
import os
import random

COMPANIES = ['Alder Systems', 'Bluepeak Energy', 'Brightwater Utilities', 'Copperfield Steel',
             'Crestline Motors', 'Granite Insurance', 'Harbor Labs', 'Juniper Retail',
             'Kestrel Airlines', 'Lumen Telecom', 'Meridian Bank', 'Northwind Foods',
             'Orchard Software', 'Redwood Pharma', 'Silverline Media', 'Summit Logistics',
             'Tidewater Shipping', 'Vantage Robotics', 'Willowbrook Dairy', 'Zephyr Textiles']
CITIES = ['Austin', 'Cork', 'Denver', 'Gdansk', 'Halifax', 'Leeds', 'Lyon', 'Melbourne',
          'Nairobi', 'Osaka', 'Perth', 'Porto', 'Tampere', 'Toronto', 'Valencia', 'Quito']
TEAMS = ['Comets', 'Falcons', 'Harriers', 'Pioneers', 'Rangers', 'Wolves', 'Otters', 'Mariners']
DAYS = ['Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday', 'Sunday']
MONTHS = ['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August',
          'September', 'October', 'November', 'December']
PEOPLE = ['Anna Kowalski', 'Hannah Brooks', 'Omar Haddad', 'Rahul Mehta', 'Samuel Adeyemi',
          'Elena Petrova', 'Lucia Moreno', 'Kenji Watanabe', 'Fatima Diallo', 'Tomas Novak']
PRODUCTS = ['electric scooter', 'home speaker', 'smart thermostat', 'tablet', 'laptop',
            'fitness tracker', 'coffee machine', 'robot vacuum']
BANDS = ['The Quiet Hours', 'Velvet Harbor', 'Northern Kites', 'Paper Lanterns', 'Glass Tigers']
DRUGS = ['Loratrex', 'Semodin', 'Vexamine', 'Caldoprin', 'Tivarol']
BILLS = ['farm support bill', 'school meals bill', 'water safety bill', 'rail funding bill',
         'data privacy bill']
AIRPORTS = ['Schiphol', 'Heathrow', 'Frankfurt Airport', 'Dublin Airport', 'Oslo Airport']
PLACES = ['jewelry store', 'supermarket', 'bank branch', 'post office', 'petrol station']
BUILDINGS = ['furniture store', 'restaurant', 'warehouse', 'bakery', 'hotel']
REGIONS = ["Borneo's", "Papua New Guinea's", "Madagascar's", "Ecuador's", "Gabon's"]


def _other(rng, values, current):
    return rng.choice([v for v in values if v != current])


def _number(lo, hi, step=1):
    return lambda rng: rng.randrange(lo, hi + 1, step)


class Event:
    """One kind of event: how to draw its facts, its wordings, and what can change.

    ``slots``: name -> function(rng) drawing a value. ``wordings``: format strings stating the
    same facts. ``contradictions``: format strings stating a different outcome in close
    wording. ``swap``: two slots whose exchange changes the meaning (or None). ``change``:
    slots that can be given another value (name -> function(rng, current)).
    """

    def __init__(self, name, slots, wordings, contradictions, change, swap=None, derived=None):
        self.name, self.slots, self.wordings = name, slots, wordings
        self.contradictions, self.change, self.swap = contradictions, change, swap
        self.derived = derived or (lambda facts: facts)

    def draw(self, rng):
        return {name: draw(rng) for name, draw in self.slots.items()}

    def say(self, template, facts):
        return template.format(**self.derived(dict(facts))).replace("s's ", "s' ")


def _pair_of(values):
    def draw(rng):
        return rng.sample(values, 2)
    return draw


def _score(facts):
    facts['a'], facts['b'] = facts['teams']
    facts['w'], facts['l'] = facts['score']
    return facts


def _parties(facts):
    facts['a'], facts['b'] = facts['parties']
    return facts


def _vote(facts):
    facts['no'] = 100 - facts['yes']
    return facts


def _score_draw(rng):
    w = rng.randint(1, 6)
    return (w, rng.randint(0, w - 1))


def _other_score(rng, score):
    while True:
        new = _score_draw(rng)
        if new != score:
            return new


def _swap_pair(rng, pair):
    return [pair[1], pair[0]]


def _change_number(lo, hi, step=1):
    def change(rng, current):
        return _other(rng, range(lo, hi + 1, step), current)
    return change


def _change_from(values):
    return lambda rng, current: _other(rng, values, current)


def _change_second(values):
    def change(rng, pair):
        return [pair[0], _other(rng, [v for v in values if v != pair[0]], pair[1])]
    return change


EVENTS = [
    Event('acquisition',
          {'parties': _pair_of(COMPANIES), 'm': _number(120, 990, 10)},
          ['{a} has reached an agreement to acquire {b} for about ${m} million.',
           '{b} will be acquired by {a} in a deal worth ${m} million.',
           'In a ${m} million deal, {a} is buying {b}.',
           '{a} agreed to buy {b} for ${m} million.'],
          ['{a} abandoned its ${m} million bid for {b}.',
           '{b} rejected a ${m} million takeover offer from {a}.'],
          {'m': _change_number(120, 990, 10), 'parties': _change_second(COMPANIES)},
          swap='parties', derived=_parties),
    Event('match',
          {'teams': _pair_of(TEAMS), 'score': _score_draw, 'day': lambda r: r.choice(DAYS)},
          ['The {a} beat the {b} {w}-{l} on {day} night.',
           'The {a} defeated the {b} by a score of {w} to {l} on {day}.',
           'On {day} night, the {b} lost {w}-{l} to the {a}.',
           'A {w}-{l} win over the {b} on {day} went to the {a}.'],
          ['The {a} and the {b} played to a {w}-{w} draw on {day} night.',
           'The {a}-{b} game on {day} night was postponed because of rain.'],
          {'score': _other_score, 'day': _change_from(DAYS), 'teams': _change_second(TEAMS)},
          swap='teams', derived=_score),
    Event('strike',
          {'c': lambda r: r.choice(COMPANIES), 'city': lambda r: r.choice(CITIES),
           'day': lambda r: r.choice(DAYS)},
          ["Workers at {c}'s {city} plant went on strike on {day}.",
           'On {day}, employees at the {city} plant of {c} walked off the job.',
           "Staff at {c}'s factory in {city} began a strike on {day}."],
          ["Workers at {c}'s {city} plant ended their strike on {day}.",
           "On {day}, {c} said its {city} plant would close for good."],
          {'city': _change_from(CITIES), 'day': _change_from(DAYS),
           'c': _change_from(COMPANIES)}),
    Event('study',
          {'drug': lambda r: r.choice(DRUGS), 'n': _number(100, 3000, 50)},
          ['A study of {n} patients found that the medicine {drug} lowered blood pressure.',
           'Researchers who followed {n} patients reported that {drug} brought down their '
           'blood pressure.',
           'In a trial involving {n} patients, {drug} reduced blood pressure.'],
          ['A study of {n} patients found that the medicine {drug} had no effect on blood '
           'pressure.',
           'Researchers who followed {n} patients reported that {drug} raised their blood '
           'pressure.'],
          {'n': _change_number(100, 3000, 50), 'drug': _change_from(DRUGS)}),
    Event('concert',
          {'band': lambda r: r.choice(BANDS), 'city': lambda r: r.choice(CITIES)},
          ['{band} cancelled its concert in {city} because the singer was ill.',
           "{band}'s concert in {city} was cancelled after the lead singer fell ill.",
           "Because of the singer's illness, {band} called off its show in {city}."],
          ['{band} played its concert in {city} even though the singer was ill.',
           '{band} added a second concert in {city} after the first one sold out.'],
          {'city': _change_from(CITIES), 'band': _change_from(BANDS)}),
    Event('launch',
          {'c': lambda r: r.choice(COMPANIES), 'p': lambda r: r.choice(PRODUCTS),
           'month': lambda r: r.choice(MONTHS)},
          ['{c} will begin selling its new {p} in {month}.',
           "Customers will be able to buy {c}'s new {p} starting in {month}.",
           "{c}'s new {p} goes on sale in {month}."],
          ['{c} will stop selling its {p} in {month}.',
           '{c} recalled its new {p} in {month}.'],
          {'month': _change_from(MONTHS), 'p': _change_from(PRODUCTS),
           'c': _change_from(COMPANIES)}),
    Event('earnings',
          {'c': lambda r: r.choice(COMPANIES), 'pct': _number(3, 45),
           'm': _number(50, 900, 5)},
          ["{c}'s quarterly profit rose {pct} percent to ${m} million.",
           'Quarterly earnings at {c} climbed {pct}% to ${m} million.',
           '{c} reported a {pct} percent increase in quarterly profit, to ${m} million.'],
          ["{c}'s quarterly profit fell {pct} percent to ${m} million.",
           '{c} reported a {pct} percent drop in quarterly sales, to ${m} million.'],
          {'pct': _change_number(3, 45), 'm': _change_number(50, 900, 5),
           'c': _change_from(COMPANIES)}),
    Event('shares',
          {'c': lambda r: r.choice(COMPANIES), 'pct': _number(2, 25),
           'day': lambda r: r.choice(DAYS)},
          ['{c} stock dropped {pct}% in early trading on {day}.',
           'Shares of {c} fell {pct} percent in early trading on {day}.',
           'In early trading on {day}, {c} shares lost {pct} percent of their value.'],
          ['{c} stock jumped {pct}% in early trading on {day}.',
           'Shares of {c} rose {pct} percent in early trading on {day}.'],
          {'pct': _change_number(2, 25), 'day': _change_from(DAYS),
           'c': _change_from(COMPANIES)}),
    Event('lawsuit',
          {'parties': _pair_of(COMPANIES), 'p': lambda r: r.choice(PRODUCTS)},
          ['{a} has filed a lawsuit accusing {b} of copying its {p} design.',
           '{a} sued {b}, claiming it had copied the design of its {p}.',
           '{b} was sued by {a}, which says the design of its {p} was copied.'],
          ['{a} and {b} agreed to develop a new {p} together.',
           '{a} dropped its lawsuit accusing {b} of copying its {p} design.'],
          {'p': _change_from(PRODUCTS), 'parties': _change_second(COMPANIES)},
          swap='parties', derived=_parties),
    Event('arrests',
          {'n': _number(2, 9), 'place': lambda r: r.choice(PLACES),
           'city': lambda r: r.choice(CITIES)},
          ['Police arrested {n} men in connection with the robbery of a {place} in {city}.',
           '{n} men were taken into custody over the robbery of a {place} in {city}, police '
           'said.',
           'Officers in {city} have detained {n} men suspected of robbing a {place}.'],
          ['Police released {n} men who had been questioned about the robbery of a {place} in '
           '{city}.',
           'Police in {city} are still looking for the {n} men who robbed a {place}.'],
          {'n': _change_number(2, 9), 'place': _change_from(PLACES),
           'city': _change_from(CITIES)}),
    Event('bridge',
          {'city': lambda r: r.choice(CITIES), 'm': _number(150, 900, 10)},
          ['Building the new bridge in {city} will cost about ${m} million.',
           'The new {city} bridge is expected to cost roughly ${m} million to build.',
           'Officials estimate that construction of the new bridge in {city} will cost around '
           '${m} million.'],
          ['Plans for a ${m} million bridge in {city} were dropped by officials.',
           'The new bridge in {city} opened after costing ${m} million less than planned.'],
          {'m': _change_number(150, 900, 10), 'city': _change_from(CITIES)}),
    Event('schools',
          {'n': _number(5, 60), 'city': lambda r: r.choice(CITIES),
           'day': lambda r: r.choice(DAYS)},
          ['Heavy rain forced the closure of {n} schools in {city} on {day}.',
           '{n} schools in {city} were closed on {day} because of heavy rain.',
           'On {day}, flooding after heavy rain shut {n} schools across {city}.'],
          ['Heavy snow forced the closure of {n} roads in {city} on {day}.',
           '{n} schools in {city} reopened on {day} after the heavy rain.'],
          {'n': _change_number(5, 60), 'city': _change_from(CITIES),
           'day': _change_from(DAYS)}),
    Event('museum',
          {'city': lambda r: r.choice(CITIES), 'month': lambda r: r.choice(MONTHS)},
          ['The {city} city museum will reopen in {month} after a two-year renovation.',
           "{city}'s city museum, closed for two years of renovation, reopens in {month}.",
           'After two years of renovation work, the city museum in {city} is set to reopen '
           'in {month}.'],
          ['The {city} city museum will close in {month} for a two-year renovation.',
           'The {city} city museum cancelled its {month} exhibition because of the '
           'renovation.'],
          {'month': _change_from(MONTHS), 'city': _change_from(CITIES)}),
    Event('vote',
          {'bill': lambda r: r.choice(BILLS), 'yes': _number(52, 80)},
          ['The Senate voted {yes} to {no} to approve the {bill}.',
           'By a vote of {yes}-{no}, the Senate passed the {bill}.',
           'The {bill} was approved by the Senate in a {yes}-{no} vote.'],
          ['The Senate voted {yes} to {no} to reject the {bill}.',
           'By a vote of {yes}-{no}, the Senate sent the {bill} back to committee.'],
          {'yes': _change_number(52, 80), 'bill': _change_from(BILLS)}, derived=_vote),
    Event('jobs',
          {'c': lambda r: r.choice(COMPANIES), 'n': _number(300, 5000, 100)},
          ['{c} plans to cut {n} jobs over the next year.',
           'Over the coming year, {c} intends to eliminate {n} positions.',
           '{c} said it would shed {n} jobs during the next twelve months.'],
          ['{c} said it had cut {n} jobs over the past decade.',
           '{c} plans to hire {n} new workers over the next year.'],
          {'n': _change_number(300, 5000, 100), 'c': _change_from(COMPANIES)}),
    Event('chief',
          {'c': lambda r: r.choice(COMPANIES), 'who': lambda r: r.choice(PEOPLE),
           'day': lambda r: r.choice(DAYS)},
          ['{c} appointed {who} as its new chief executive on {day}.',
           '{who} was named chief executive of {c} on {day}.',
           'On {day}, {c} said {who} would become its chief executive.'],
          ['{who} resigned as chief executive of {c} on {day}.',
           'On {day}, {c} said {who} would leave the company.'],
          {'who': _change_from(PEOPLE), 'c': _change_from(COMPANIES),
           'day': _change_from(DAYS)}),
    Event('mayor',
          {'who': lambda r: r.choice(PEOPLE), 'city': lambda r: r.choice(CITIES),
           'pct': _number(51, 70)},
          ['Voters in {city} chose {who} as their new mayor, with {pct} percent of the vote.',
           '{who} won the mayoral race in {city} with {pct} percent of the vote.',
           'With {pct}% of the ballots, {who} was elected mayor of {city}.'],
          ['{who} lost the mayoral race in {city} despite winning {pct} percent of the vote '
           'in the first round.',
           'Voters in {city} rejected {who} as mayor, giving the rival {pct} percent of the '
           'vote.'],
          {'pct': _change_number(51, 70), 'city': _change_from(CITIES),
           'who': _change_from(PEOPLE)}),
    Event('flights',
          {'n': _number(40, 400, 10), 'airport': lambda r: r.choice(AIRPORTS)},
          ['Fog led to the cancellation of over {n} flights at {airport}.',
           'More than {n} flights were cancelled at {airport} because of fog.',
           'Thick fog grounded more than {n} flights at {airport}.'],
          ['About {n} flights were delayed at {airport} by a baggage system failure.',
           'Despite the fog, more than {n} flights left {airport} on time.'],
          {'n': _change_number(40, 400, 10), 'airport': _change_from(AIRPORTS)}),
    Event('fire',
          {'b': lambda r: r.choice(BUILDINGS), 'city': lambda r: r.choice(CITIES),
           'day': lambda r: r.choice(DAYS)},
          ['Officials said an early-morning fire on {day} burned down a {b} in {city}.',
           'A {b} in {city} was destroyed by fire in the early hours of {day}.',
           'Fire gutted a {b} in {city} early on {day}, officials said.'],
          ['Firefighters saved a {b} in {city} from a blaze early on {day}.',
           'A {b} in {city} reopened on {day}, a year after a fire.'],
          {'b': _change_from(BUILDINGS), 'city': _change_from(CITIES),
           'day': _change_from(DAYS)}),
    Event('species',
          {'n': _number(3, 30), 'region': lambda r: r.choice(REGIONS)},
          ["{n} previously unknown frog species were discovered in {region} forests.",
           "Scientists found {n} new species of frog in {region} forests.",
           "Biologists working in {region} forests identified {n} frog species new to "
           "science."],
          ["{n} frog species have disappeared from {region} forests, scientists said.",
           "Scientists failed to find {n} frog species that once lived in {region} forests."],
          {'n': _change_number(3, 30), 'region': _change_from(REGIONS)}),
]


def paraphrase(rng, event):
    facts = event.draw(rng)
    first, second = rng.sample(event.wordings, 2)
    return event.say(first, facts), event.say(second, facts)


def non_paraphrase(rng, event):
    """A pair stating different facts; the kinds in about 45/20/15/20 proportions."""
    facts = event.draw(rng)
    kind = rng.random()
    first = rng.choice(event.wordings)
    if kind < 0.45:                                     # one fact changed
        name = rng.choice(sorted(event.change))
        changed = dict(facts, **{name: event.change[name](rng, facts[name])})
        second = first if rng.random() < 0.3 else _other(rng, event.wordings, first)
        return event.say(first, facts), event.say(second, changed)
    if kind < 0.65 or (kind < 0.80 and not event.swap):  # contradicting outcome
        return event.say(first, facts), event.say(rng.choice(event.contradictions), facts)
    if kind < 0.80:                                     # roles swapped
        swapped = dict(facts, **{event.swap: _swap_pair(rng, facts[event.swap])})
        return event.say(first, facts), event.say(_other(rng, event.wordings, first), swapped)
    other = _other(rng, EVENTS, event)                  # another event
    return event.say(first, facts), other.say(rng.choice(other.wordings), other.draw(rng))


def generate(count, rng, seen):
    """``count`` labelled pairs (two paraphrases for every non-paraphrase), none in ``seen``."""
    rows = []
    while len(rows) < count:
        label = 0 if len(rows) % 3 == 2 else 1
        event = rng.choice(EVENTS)
        a, b = (paraphrase if label else non_paraphrase)(rng, event)
        if rng.random() < 0.5:
            a, b = b, a
        if a == b or (a, b) in seen or (b, a) in seen:
            continue
        seen.add((a, b))
        rows.append((label, a, b))
    rng.shuffle(rows)
    return rows


def write(path, rows, first_id):
    lines = ['Quality\t#1 ID\t#2 ID\t#1 String\t#2 String']
    for i, (label, a, b) in enumerate(rows):
        lines.append(f'{label}\t{first_id + 2 * i}\t{first_id + 2 * i + 1}\t{a}\t{b}')
    tmp = f'{path}.tmp{os.getpid()}'
    with open(tmp, 'w', encoding='utf-8', newline='\n') as f:
        f.write('\n'.join(lines) + '\n')
    os.replace(tmp, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--train', type=int, default=800)
    parser.add_argument('--dev', type=int, default=200)
    parser.add_argument('--seed', type=int, default=2024)
    parser.add_argument('--out', default=os.path.join(os.path.dirname(__file__), '..', 'data',
                                                      'paraphrase_sample'))
    args = parser.parse_args()
    rng = random.Random(args.seed)
    seen = set()
    train = generate(args.train, rng, seen)
    dev = generate(args.dev, rng, seen)
    os.makedirs(args.out, exist_ok=True)
    write(os.path.join(args.out, 'train.tsv'), train, 100001)
    write(os.path.join(args.out, 'dev.tsv'), dev, 900001)
    print(f'{args.out}: {len(train)} train / {len(dev)} dev pairs')


if __name__ == '__main__':
    main()

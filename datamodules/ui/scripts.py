"""The intent categories of the synthetic UI recordings: the slot vocabulary, one script per category (the
screens and actions that play it) and :data:`CATEGORIES` (template, delexicalised intent, script)."""

from __future__ import annotations

import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .recording import Recording
from .screens import _APP_COLORS, APPS, Screen

VOCAB: dict[str, tuple[str, ...]] = {
    "app": APPS,
    "shop": ("Shopzy", "Market"),
    "music": ("Tunes", "Beats"),
    "item": ("headphones", "running shoes", "coffee beans", "desk lamp", "yoga mat", "phone case", "backpack",
             "water bottle"),
    "setting": ("wi-fi", "bluetooth", "dark mode", "airplane mode", "location", "do not disturb", "battery saver",
                "hotspot"),
    "contact": ("Alice", "Bob", "Maria", "Chen", "Priya", "Omar", "Lena", "Sam"),
    "song": ("blue sky", "night drive", "golden hour", "rainfall", "old town", "paper moon"),
    "place": ("central station", "the airport", "city library", "main street cafe", "the museum"),
    "city": ("paris", "tokyo", "lima", "oslo", "cairo", "denver"),
    "time": ("6:30", "7:00", "7:45", "8:15", "9:20", "5:50"),
    "note": ("buy milk", "call mom", "pay rent", "gym at 6", "water plants"),
    "message": ("on my way", "see you soon", "running late", "call me", "thanks"),
    "mode": ("portrait", "night", "square", "wide"),
    "album": ("holidays", "family", "pets", "food", "screenshots"),
    "topic": ("sports", "science", "politics", "travel", "movies"),
    "event": ("dentist", "team lunch", "birthday party", "yoga class"),
    "day": ("monday", "tuesday", "friday", "saturday"),
}


# Each script plays one intent category: ``script(rec, slots, rng)`` with the slots of its template filled.
Script = Callable[[Recording, dict[str, str], np.random.Generator], None]


def _pick(rng: np.random.Generator, pool: Sequence[str], k: int, must: str | None = None) -> list[str]:
    others = [x for x in pool if x != must]
    chosen = [str(x) for x in rng.choice(others, size=min(k, len(others)), replace=False)]
    if must is not None:
        chosen.insert(int(rng.integers(0, len(chosen) + 1)), must)
    return chosen


def _app(app: str, **kw: Any) -> Screen:
    return Screen(**{"title": app, "color": _APP_COLORS[app], **kw})


def _search(rec: Recording, app: str, query: str, results: Sequence[str], landing: Sequence[str]) -> Screen:
    """Open ``app``, tap its search field, type ``query``, press enter; ends on the result list."""
    s0 = _app(app, rows=tuple(landing), field="")
    rec.open_app(app, s0)
    rec.tap(s0, rec.p.field_xy())
    rec.type(lambda text, key: replace(s0, field=text, keyboard=True, pressed_key=key), query)
    typed = replace(s0, field=query, keyboard=True)
    rec.tap(typed, rec.p.key_xy("\n"), replace(typed, pressed_key="\n"))
    res = replace(s0, field=query, rows=tuple(results))
    rec.hold(res, 0.8)
    return res


def _tap_row(rec: Recording, s: Screen, i: int) -> None:
    rec.tap(s, rec.p.row_xy(s, i), replace(s, pressed_row=i))


def _visible(rec: Recording, s: Screen, i: int) -> Screen:
    """Scroll ``s`` so that row ``i`` is in view (a drag when it is below the fold)."""
    rows_in_view = (rec.p.content_bottom(s) - rec.p.content_top(s)) // rec.p.row_h
    if i < rows_in_view - 1:
        return s
    return rec.scroll(s, (i - rows_in_view + 2) * rec.p.row_h)


def _results(query: str, suffixes: Sequence[str]) -> list[str]:
    return [query] + [f"{query} {x}" for x in suffixes]


def s_open_app(rec, slots, rng):
    app = slots["app"]
    landing = _app(app, rows=tuple(_pick(rng, VOCAB["item"] + VOCAB["note"], 7)), fab=bool(rng.integers(2)))
    rec.open_app(app, landing)
    rec.hold(landing, 2.0)


def s_search_shop(rec, slots, rng):
    res = _search(rec, slots["shop"], slots["item"], _results(slots["item"], ("pro", "mini", "set", "xl")),
                  _pick(rng, VOCAB["item"], 6))
    rec.scroll(res, rec.p.row_h * 2)


def s_search_music(rec, slots, rng):
    _search(rec, slots["music"], slots["song"], _results(slots["song"], ("live", "remix", "acoustic")),
            _pick(rng, VOCAB["song"], 5))


def s_search_maps(rec, slots, rng):
    _search(rec, "Maps", slots["place"], _results(slots["place"], ("north", "east")), ())
    rec.slide(_app("Maps", field=slots["place"], rows=(slots["place"],)), Screen(kind="map", title="Maps"))
    rec.hold(Screen(kind="map", title="Maps"), 1.0)


def _toggle(rec, slots, rng, on):
    names = _pick(rng, VOCAB["setting"], 7, must=slots["setting"])
    i = names.index(slots["setting"])
    states = [bool(x) for x in rng.integers(0, 2, len(names))]
    states[i] = not on
    s = _app("Settings", rows=tuple(names), toggles=tuple(states))
    rec.open_app("Settings", s)
    s = _visible(rec, s, i)
    rec.tap(s, rec.p.end_xy(s, i))
    states[i] = on
    rec.hold(replace(s, toggles=tuple(states)), 1.5)


def s_turn_on(rec, slots, rng):
    _toggle(rec, slots, rng, True)


def s_turn_off(rec, slots, rng):
    _toggle(rec, slots, rng, False)


def s_send_message(rec, slots, rng):
    contact, message = slots["contact"], str(rng.choice(VOCAB["message"]))
    names = _pick(rng, VOCAB["contact"], 6, must=contact)
    i = names.index(contact)
    inbox = _app("Messages", rows=tuple(names))
    rec.open_app("Messages", inbox)
    _tap_row(rec, inbox, i)
    chat = _app("Messages", title=contact, field="", bubbles=(str(rng.choice(VOCAB["message"])),))
    rec.slide(inbox, chat)
    rec.tap(chat, rec.p.field_xy())
    rec.type(lambda text, key: replace(chat, field=text, keyboard=True, pressed_key=key), message)
    typed = replace(chat, field=message, keyboard=True)
    rec.tap(typed, rec.p.key_xy("\n"), replace(typed, pressed_key="\n"))
    rec.hold(replace(chat, bubbles=chat.bubbles + (message,)), 1.2)


def s_add_to_cart(rec, slots, rng):
    shop, item = slots["shop"], slots["item"]
    res = _search(rec, shop, item, _results(item, ("pro", "mini")), _pick(rng, VOCAB["item"], 5))
    _tap_row(rec, res, 0)
    page = _app(shop, big=item, rows=(f"${int(rng.integers(5, 90))}.99",), button="Add to cart", badge=0)
    rec.slide(res, page)
    rec.tap(page, rec.p.button_xy(page))
    rec.hold(replace(page, badge=1, button="In cart"), 1.2)


def s_remove_from_cart(rec, slots, rng):
    shop, item = slots["shop"], slots["item"]
    items = _pick(rng, VOCAB["item"], 2, must=item)
    home = _app(shop, rows=tuple(_pick(rng, VOCAB["item"], 6)), badge=len(items))
    rec.open_app(shop, home)
    rec.tap(home, rec.p.cart_xy())
    cart = _app(shop, title="Cart", rows=tuple(items), deletable=True, badge=len(items), button="Checkout")
    rec.slide(home, cart)
    i = items.index(item)
    rec.tap(cart, rec.p.end_xy(cart, i))
    rec.hold(replace(cart, rows=tuple(x for x in items if x != item), badge=len(items) - 1), 1.2)


def s_call(rec, slots, rng):
    contact = slots["contact"]
    names = _pick(rng, VOCAB["contact"], 7, must=contact)
    i = names.index(contact)
    book = _app("Phone", rows=tuple(names))
    rec.open_app("Phone", book)
    book = _visible(rec, book, i)
    _tap_row(rec, book, i)
    call = Screen(title="Calling", color=(48, 176, 80), big=contact, button="End")
    rec.slide(book, call)
    rec.animate(lambda t: replace(call, rows=(f"0:0{int(t * 5)}",)), 1.5)


def s_play_song(rec, slots, rng):
    music, song = slots["music"], slots["song"]
    res = _search(rec, music, song, _results(song, ("live", "remix")), _pick(rng, VOCAB["song"], 4))
    _tap_row(rec, res, 0)
    player = _app(music, big=song, progress=0.0)
    rec.slide(res, player)
    rec.animate(lambda t: replace(player, progress=0.3 * t), 2.0)


def _new_item(rec, app, existing, text, button, toggles=False):
    """List screen with a "+" button -> editor: type ``text`` -> ``button`` -> the list with the new row first."""
    lst = _app(app, rows=tuple(existing), fab=True, toggles=tuple(True for _ in existing) if toggles else ())
    rec.open_app(app, lst)
    rec.tap(lst, rec.p.fab_xy(lst))
    editor = _app(app, title="New", field="", keyboard=True, button=button)
    rec.slide(lst, editor)
    rec.type(lambda t, key: replace(editor, field=t, pressed_key=key), text)
    done = replace(editor, field=text)
    rec.tap(done, rec.p.button_xy(done))
    rows = (text, *existing)
    rec.hold(replace(lst, rows=rows, toggles=tuple(True for _ in rows) if toggles else ()), 1.2)


def s_set_alarm(rec, slots, rng):
    others = [x for x in _pick(rng, VOCAB["time"], 3) if x != slots["time"]]
    _new_item(rec, "Clock", others, slots["time"], "Save", toggles=True)


def s_create_note(rec, slots, rng):
    _new_item(rec, "Notes", [x for x in _pick(rng, VOCAB["note"], 3) if x != slots["note"]], slots["note"], "Done")


def _delete_row(rec, app, rows, target):
    lst = _app(app, rows=tuple(rows), deletable=True)
    rec.open_app(app, lst)
    i = rows.index(target)
    rec.tap(lst, rec.p.end_xy(lst, i))
    rec.hold(replace(lst, rows=tuple(r for r in rows if r != target)), 1.2)


def s_delete_alarm(rec, slots, rng):
    _delete_row(rec, "Clock", _pick(rng, VOCAB["time"], 3, must=slots["time"]), slots["time"])


def s_delete_note(rec, slots, rng):
    _delete_row(rec, "Notes", _pick(rng, VOCAB["note"], 3, must=slots["note"]), slots["note"])


def s_directions(rec, slots, rng):
    res = _search(rec, "Maps", slots["place"], _results(slots["place"], ("entrance",)), ())
    _tap_row(rec, res, 0)
    m = Screen(kind="map", title="Maps", route=0.0)
    rec.slide(res, m)
    rec.animate(lambda t: replace(m, route=t), 2.0)


def s_weather(rec, slots, rng):
    city = slots["city"]
    res = _search(rec, "Weather", city, (city, f"{city} airport"), _pick(rng, VOCAB["city"], 3))
    _tap_row(rec, res, 0)
    card = _app("Weather", title=city, big=f"{int(rng.integers(-5, 35))}C", rows=("mon", "tue", "wed"))
    rec.slide(res, card)
    rec.hold(card, 1.5)


def s_read_email(rec, slots, rng):
    contact = slots["contact"]
    senders = _pick(rng, VOCAB["contact"], 7, must=contact)
    i = senders.index(contact)
    inbox = _app("Mail", rows=tuple(f"{s}: {rng.choice(VOCAB['topic'])}" for s in senders), fab=True)
    rec.open_app("Mail", inbox)
    inbox = _visible(rec, inbox, i)
    _tap_row(rec, inbox, i)
    mail = _app("Mail", title=contact, rows=tuple(_pick(rng, VOCAB["message"], 4)))
    rec.slide(inbox, mail)
    rec.hold(mail, 1.5)


def s_compose_email(rec, slots, rng):
    contact = slots["contact"].lower()
    inbox = _app("Mail", rows=tuple(_pick(rng, VOCAB["contact"], 5)), fab=True)
    rec.open_app("Mail", inbox)
    rec.tap(inbox, rec.p.fab_xy(inbox))
    draft = _app("Mail", title="To:", field="", keyboard=True, button="Send")
    rec.slide(inbox, draft)
    rec.type(lambda t, key: replace(draft, field=t, pressed_key=key), contact)
    done = replace(draft, field=contact)
    rec.tap(done, rec.p.button_xy(done))
    rec.hold(inbox, 0.8)


def s_add_contact(rec, slots, rng):
    _new_item(rec, "Contacts", [x for x in _pick(rng, VOCAB["contact"], 4) if x != slots["contact"]],
              slots["contact"].lower(), "Save")


def s_take_photo(rec, slots, rng):
    cam = Screen(kind="camera", title="photo")
    rec.open_app("Camera", cam)
    moded = replace(cam, title=slots["mode"])
    rec.tap(cam, (rec.p.w // 2, rec.p.h - rec.p.icon - 12), moded)
    shutter = (rec.p.w // 2, rec.p.h - rec.p.icon // 2 - 6)
    rec.tap(moded, shutter)
    rec.hold(replace(moded, flash=True), 0.3)
    rec.hold(replace(moded, badge=1), 1.2)


def s_view_photo(rec, slots, rng):
    albums = _pick(rng, VOCAB["album"], 4, must=slots["album"])
    lst = _app("Photos", rows=tuple(albums))
    rec.open_app("Photos", lst)
    _tap_row(rec, lst, albums.index(slots["album"]))
    grid = _app("Photos", kind="grid", title=slots["album"])
    rec.slide(lst, grid)
    grid = rec.scroll(grid, rec.p.w // 3)
    rec.tap(grid, (rec.p.w // 2, rec.p.content_top(grid) + rec.p.w // 6))
    rec.hold(Screen(kind="camera", title=slots["album"], flash=False), 1.2)


def s_browse_news(rec, slots, rng):
    topic = slots["topic"]
    heads = _pick(rng, VOCAB["topic"] + VOCAB["city"], 9, must=topic)
    lst = _app("News", rows=tuple(heads))
    rec.open_app("News", lst)
    lst = rec.scroll(lst, rec.p.row_h * 3, 2.0)
    i = heads.index(topic)
    lst = _visible(rec, replace(lst, scroll=0), i) if i >= 3 else lst
    _tap_row(rec, lst, i)
    rec.slide(lst, _app("News", title=topic, rows=tuple(_pick(rng, VOCAB["message"], 5))))
    rec.hold(_app("News", title=topic, rows=tuple(_pick(rng, VOCAB["message"], 5))), 1.0)


def s_add_event(rec, slots, rng):
    days = list(VOCAB["day"])
    cal = _app("Calendar", rows=tuple(days))
    rec.open_app("Calendar", cal)
    _tap_row(rec, cal, days.index(slots["day"]))
    day = _app("Calendar", title=slots["day"], rows=(), fab=True)
    rec.slide(cal, day)
    rec.tap(day, rec.p.fab_xy(day))
    editor = _app("Calendar", title="New event", field="", keyboard=True, button="Add")
    rec.slide(day, editor)
    rec.type(lambda t, key: replace(editor, field=t, pressed_key=key), slots["event"])
    done = replace(editor, field=slots["event"])
    rec.tap(done, rec.p.button_xy(done))
    rec.hold(replace(day, rows=(slots["event"],)), 1.0)


@dataclass(frozen=True)
class IntentCategory:
    """An intent category: a lexicalised template (slots in braces, filled from :data:`VOCAB`), the
    delexicalised intent of the IIW-like set, and the script that plays it."""

    name: str
    template: str
    delexicalised: str
    script: Script

    @property
    def slots(self) -> list[str]:
        return [f for _, f, _, _ in string.Formatter().parse(self.template) if f]


CATEGORIES: dict[str, IntentCategory] = {c.name: c for c in (
    IntentCategory("open_app", "open {app}", "open an app", s_open_app),
    IntentCategory("search_shopping", "search for {item} in {shop}", "search for an item in a shopping app",
                   s_search_shop),
    IntentCategory("search_music", "search for {song} in {music}", "search for a song in a music app",
                   s_search_music),
    IntentCategory("search_maps", "search for {place} in maps", "search for a place in a maps app", s_search_maps),
    IntentCategory("turn_on_setting", "turn on {setting}", "turn on a setting", s_turn_on),
    IntentCategory("turn_off_setting", "turn off {setting}", "turn off a setting", s_turn_off),
    IntentCategory("send_message", "send a message to {contact}", "send a message to a contact", s_send_message),
    IntentCategory("add_to_cart", "add {item} to the cart in {shop}", "add an item to the shopping cart",
                   s_add_to_cart),
    IntentCategory("remove_from_cart", "remove {item} from the cart in {shop}",
                   "remove an item from the shopping cart", s_remove_from_cart),
    IntentCategory("call_contact", "call {contact}", "call a contact", s_call),
    IntentCategory("play_song", "play {song} in {music}", "play a song in a music app", s_play_song),
    IntentCategory("set_alarm", "set an alarm for {time}", "set an alarm", s_set_alarm),
    IntentCategory("delete_alarm", "delete the {time} alarm", "delete an alarm", s_delete_alarm),
    IntentCategory("create_note", "create a note saying {note}", "create a note", s_create_note),
    IntentCategory("delete_note", "delete the note {note}", "delete a note", s_delete_note),
    IntentCategory("get_directions", "get directions to {place}", "get directions to a place", s_directions),
    IntentCategory("check_weather", "check the weather in {city}", "check the weather in a city", s_weather),
    IntentCategory("read_email", "read the email from {contact}", "read an email from a contact", s_read_email),
    IntentCategory("compose_email", "write an email to {contact}", "write an email to a contact", s_compose_email),
    IntentCategory("add_contact", "add {contact} to contacts", "add a new contact", s_add_contact),
    IntentCategory("take_photo", "take a photo in {mode} mode", "take a photo", s_take_photo),
    IntentCategory("view_photo", "open a photo from the {album} album", "open a photo from an album", s_view_photo),
    IntentCategory("read_news", "read the news about {topic}", "read a news article", s_browse_news),
    IntentCategory("add_event", "add {event} to the calendar on {day}", "add an event to the calendar", s_add_event),
)}

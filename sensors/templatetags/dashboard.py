"""The dashboard's repeated fragments as HTML built in Python, every text escaped.

A greenhouse of 200 sensors puts 1,000 values on the dashboard, refreshed every 30 s by every
open tab. Rendered node by node by the template engine that cost most of the request; built
here with the standard library's `html.escape` (what Django's `escape` does, without its lazy
wrapper, which cost more than the escaping) it is a few milliseconds. The page's structure
stays in the templates (`_dashboard_body.html`); only a card and a comparison row are made here.
Every value from the database or a person (names, labels) goes through `_e`.
"""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from html import escape

from django import template
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.dateformat import format as format_date
from django.utils.safestring import SafeString, mark_safe

from sensors.web.dashboard import LocationCard, SensorCard, ShownValue

register = template.Library()


def _e(text: object) -> str:
    return escape(str(text), quote=True)


@lru_cache(maxsize=4096)
def _e_shown(text: str) -> str:
    """`_e` of a value's text or trend title ("18.7 °C"): a few hundred distinct ones on a whole page."""
    return _e(text)


@lru_cache(maxsize=512)
def _term(metric: str, label: str) -> str:
    """A value's label and the start of its cell: the same for every sensor, escaped once per process."""
    metric = _e(metric)
    return f'<dt>{_e(label)}</dt><dd class="value metric-{metric}" data-metric="{metric}">'


@lru_cache(maxsize=512)
def _label(label: str) -> str:
    """A comparison cell's data-label attribute (a metric's label, the same in every row)."""
    return f' data-label="{_e(label)}"'


def _value(value: ShownValue, stamp: str) -> str:
    # trend and arrow are this module's own words, `stamp` the value's <time>: only the rest is escaped.
    trend = (
        f' <span class="trend {value.trend}" title="{_e_shown(value.change_text)}">{value.arrow}</span>'
        if value.trend
        else ""
    )
    return f"{_term(value.metric, value.label)}{_e_shown(value.text)}{trend} {stamp}</dd>"


def _values(values: list[ShownValue]) -> str:
    """A card's values; their <time> written once per moment (a card's values mostly share one)."""
    stamps: dict[datetime, str] = {}
    parts = []
    for value in values:
        stamp = stamps.get(value.received_at)
        if stamp is None:
            iso = value.received_at.isoformat()
            stamp = stamps[value.received_at] = f'<time class="age" datetime="{iso}">{value.age}</time>'
        parts.append(_value(value, stamp))
    return "".join(parts)


@lru_cache(maxsize=1024)
def _since(minute: datetime, zone: str, language: str | None) -> str:
    """ "Dec 3, 14:05" in the shown time zone and language: Django's date format costs ~30 us a call,
    and a greenhouse whose collector stopped has every card offline since about the same minute."""
    return _e(format_date(timezone.localtime(minute), "M j, H:i"))


def _offline_since(context: template.Context, moment: datetime) -> str:
    cache = context.render_context  # the zone and language looked up once a render, not once a card
    if "shown_in" not in cache:
        cache["shown_in"] = (timezone.get_current_timezone_name(), translation.get_language())
    return _since(moment.replace(second=0, microsecond=0), *cache["shown_in"])


# What stands in a URL's argument while it is reversed once a render (no real device id or location id).
_MAC_SLOT = "00:00:00:00:00:00"
_PK_SLOT = "918273645"


def _url(context: template.Context, name: str, slot: str, value: object) -> str:
    """`name`'s URL for `value`: reversed once a render with `slot` in its place, not once a card or a location."""
    cache = context.render_context
    key = f"url:{name}"
    if key not in cache:
        cache[key] = reverse(name, args=[slot])
    return cache[key].replace(slot, str(value), 1)


@register.simple_tag(takes_context=True)
def location_name(context: template.Context, group: LocationCard) -> SafeString:
    """A location's name, a link to its page."""
    if group.location is None:
        return mark_safe(_e(group.name))
    link = _url(context, "location", _PK_SLOT, group.location.pk)
    return mark_safe(f'<a href="{_e(link)}">{_e(group.name)}</a>')


@register.simple_tag(takes_context=True)
def sensor_cards(context: template.Context, group: LocationCard) -> SafeString:
    """A location's cards, in one tag call (a call per card through the template engine cost ~15 us each)."""
    return mark_safe("\n".join(sensor_card(context, card) for card in group.sensors))


def sensor_card(context: template.Context, card: SensorCard) -> str:
    """One sensor's card: its name (a link to its page), online or since when not, its values."""
    if card.online:
        badge = '<span class="badge ok">online</span>'
    elif card.offline_since is not None:
        badge = f'<span class="badge stale">offline since {_offline_since(context, card.offline_since)}</span>'
    else:
        badge = '<span class="badge stale">never reported</span>'
    values = _values(card.values) or "<dt>no readings yet</dt>"
    state = "online" if card.online else "offline"
    link = _e(_url(context, "sensor", _MAC_SLOT, card.sensor.device_id))
    return (
        f'<li class="sensor {state}"><a href="{link}">{_e(card.sensor.display_name)}</a> {badge}<dl>{values}</dl></li>'
    )


@register.simple_tag
def comparison_rows(group: LocationCard) -> SafeString:
    """The rows of a location's side-by-side table: a sensor each, a cell per metric."""
    rows = []
    for card, cells in group.rows:
        tds = "".join(f"<td{_label(cell.label)}>{_e_shown(cell.text)}</td>" if cell else "<td></td>" for cell in cells)
        offline = "" if card.online else ' class="offline"'
        rows.append(f'<tr{offline}><th scope="row">{_e(card.sensor.display_name)}</th>{tds}</tr>')
    return mark_safe("\n".join(rows))

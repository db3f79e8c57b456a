"""The text exposition formats, rendered by prometheus-client, with a fast path for cached rows.

Prometheus text 0.0.4 and OpenMetrics differ only in a family's header lines (HELP/TYPE/UNIT, and
`# EOF`); a sample line is the same in both. So a header is rendered once per family and format by
prometheus-client itself, and rows kept as text are reused in either format.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client import exposition
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from lmwatch.metrics.family import Family

format_value: Callable[[float], str] = floatToGoString
"""A value as both formats write it (Go's float formatting)."""

EOF_LINE = "# EOF\n"

Encoder = Callable[..., bytes]


class _Families:
    """A collector of given families, to hand prometheus-client's encoders."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterable[Metric]:
        return self._families


@dataclass
class Format:
    """One exposition format: its encoder and the headers it has rendered."""

    openmetrics: bool
    _headers: dict[tuple[str, str, str, str], str] = field(default_factory=dict)

    @property
    def encoder(self) -> Encoder:
        return openmetrics.generate_latest if self.openmetrics else exposition.generate_latest

    def families(self, families: Iterable[Metric]) -> str:
        """Families as prometheus-client renders them (without OpenMetrics' `# EOF`); plain samples
        (no timestamp, exemplar or native histogram: all of lmwatch's) are written here, faster."""
        out: list[str] = []
        for family in families:
            if all(_plain(s) for s in family.samples):
                out.append(self.header(family))
                out.extend(sample_line(s.name, s.labels, s.value) for s in family.samples)
            else:
                out.append(self._encoded([family]))
        return "".join(out)

    def _encoded(self, families: list[Metric]) -> str:
        text = self.encoder(_Families(families)).decode()
        return text.removesuffix(EOF_LINE) if self.openmetrics else text

    def header_of(self, family: Family) -> str:
        return self.header(family.new())

    def header(self, family: Metric) -> str:
        key = (family.name, family.documentation, family.type, family.unit)
        found = self._headers.get(key)
        if found is None:
            found = self._headers[key] = self._encoded([Metric(*key)])
        return found


def _plain(sample: Sample) -> bool:
    return (
        sample.timestamp is None
        and sample.exemplar is None
        and sample.native_histogram is None
        and not sample.name.endswith(("_created", "_gsum", "_gcount"))
    )


def escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def sample_line(name: str, labels: Mapping[str, str], value: float) -> str:
    """One sample as both formats write it (labels sorted, as prometheus-client does)."""
    if not labels:
        return f"{name} {format_value(value)}\n"
    inner = ",".join(f'{k}="{escape(v)}"' for k, v in sorted(labels.items()))
    return f"{name}{{{inner}}} {format_value(value)}\n"


Row = tuple[Family, tuple[str, ...], float, dict[str, str] | None]
"""One sample: its family, label values, value and (info families) the value labels."""

Group = tuple[Hashable, object, Callable[[], Iterable[Row]]]
"""Rows kept together: where they are kept (a backend's name), what they depend on, how to make them."""

SLICE = 25
"""Groups (backends) looked at between two pause points of a render (see `KeptRows.chunks`)."""


def collect_rows(families: Sequence[Family], rows: Iterable[Row]) -> list[Metric]:
    """The families filled with `rows`, for prometheus-client."""
    metrics = {family.name: family.new() for family in families}
    for family, labels, value, extra in rows:
        family.add(metrics[family.name], labels, value, extra)
    return list(metrics.values())


class KeptRows:
    """Families written from groups of rows, each group kept as text while what it depends on is
    unchanged (the same lines serve both formats)."""

    def __init__(self) -> None:
        self._kept: dict[Hashable, tuple[object, dict[str, str]]] = {}
        self._prefixes: dict[tuple[str, tuple[str, ...]], str] = {}
        """(family, label values) -> the line up to its value, for rows whose values change often
        (probe timings); info families' value labels are not kept here."""

    def render(self, fmt: Format, families: Sequence[Family], groups: Iterable[Group]) -> str:
        return "".join(self.chunks(fmt, families, groups))

    def chunks(self, fmt: Format, families: Sequence[Family], groups: Iterable[Group]) -> Iterator[str]:
        """The families' text in pieces, with an empty piece after every `SLICE` groups: a scrape
        of hundreds of backends can let the event loop run there. Two renders interleaved (two
        scrapes at once) stay right: what is kept is checked against its key before it is reused."""
        kept: dict[Hashable, tuple[object, dict[str, str]]] = {}
        prefixes: dict[tuple[str, tuple[str, ...]], str] = {}
        texts = []
        for slot, key, rows in groups:
            found = self._kept.get(slot)
            if found is None or found[0] != key:
                found = (key, self._lines(rows(), prefixes))
            kept[slot] = found
            texts.append(found[1])
            if len(texts) % SLICE == 0:
                yield ""
        self._kept = kept  # a group that is gone (a removed backend) goes with it
        self._prefixes = prefixes
        for f in families:
            yield fmt.header_of(f) + "".join(text.get(f.name, "") for text in texts)

    def _lines(self, rows: Iterable[Row], prefixes: dict[tuple[str, tuple[str, ...]], str]) -> dict[str, str]:
        """Sample lines by family name."""
        lines: dict[str, list[str]] = {}
        for family, labels, value, extra in rows:
            if extra:
                names = dict(zip(family.labels, labels, strict=True)) | extra
                line = sample_line(family.sample_name, names, value)
            else:
                slot = (family.name, labels)
                prefix = prefixes.get(slot) or self._prefixes.get(slot)
                if prefix is None:
                    prefix = sample_line(family.sample_name, dict(zip(family.labels, labels, strict=True)), 0)
                    prefix = prefix[: prefix.rindex(" ") + 1]
                prefixes[slot] = prefix
                line = f"{prefix}{format_value(value)}\n"
            lines.setdefault(family.name, []).append(line)
        return {name: "".join(text) for name, text in lines.items()}

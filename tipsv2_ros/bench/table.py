# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""Benchmark rows and the one table ``tipsv2 bench`` prints (GitHub markdown)."""
import dataclasses
import math
from typing import Dict, List, Optional, Sequence

from tipsv2_ros.bench.timing import milliseconds, Samples

SECTIONS = ('frame path, per stage (in process)', 'end to end over DDS',
            'ratios (measured side by side)')


@dataclasses.dataclass
class Row:
    """One line of the table; a stage has times, a ratio has a value, a target and a verdict."""

    section: str
    name: str
    p50: float = math.nan  # seconds
    p90: float = math.nan
    value: str = ''  # the ratio (or bytes...) for ratio rows
    target: str = ''
    passed: Optional[bool] = None  # None: informational, or not measured
    note: str = ''

    @classmethod
    def timing(cls, section: str, name: str, samples: Sequence[float], note: str = ''
               ) -> 'Row':
        values = Samples(samples)
        return cls(section, name, values.p50, values.p90, note=note)

    @classmethod
    def skipped(cls, section: str, name: str, why: str, target: str = '') -> 'Row':
        return cls(section, name, target=target, note=f'not measured: {why}')

    @property
    def result(self) -> str:
        if self.passed is None:
            return '-' if self.target else ''
        return 'PASS' if self.passed else 'MISS'


def ratio_row(name: str, ratio: float, limit: float, note: str = '', *, strict: bool = False,
              p50: float = math.nan, p90: float = math.nan) -> Row:
    """Return a ratio row with its target ``<= limit`` (``< limit`` when ``strict``)."""
    ok = ratio < limit if strict else ratio <= limit
    return Row(SECTIONS[2], name, p50, p90, f'{ratio:.3f}',
               f'{"<" if strict else "<="} {limit:g}', None if math.isnan(ratio) else ok, note)


def render(title: str, facts: Dict[str, str], rows: List[Row], method: str) -> str:
    """Return the whole table as markdown: a title, the machine, then one table."""
    lines = [f'### {title}', '']
    lines += [f'- **{label}**: {text}' for label, text in facts.items()]
    lines += [f'- **method**: {method}', '']
    header = ('what', 'p50 ms', 'p90 ms', 'value', 'target', 'result', 'notes')
    table = [header]
    for section in SECTIONS:
        members = [row for row in rows if row.section == section]
        if not members:
            continue
        table.append((f'**{section}**', '', '', '', '', '', ''))
        for row in members:
            table.append((row.name, milliseconds(row.p50), milliseconds(row.p90), row.value,
                          row.target, row.result, row.note))
    for cells in table:
        lines.append('| ' + ' | '.join(str(c).replace('|', '/') for c in cells) + ' |')
        if cells is header:
            lines.append('|' + '|'.join('---' for _ in header) + '|')
    return '\n'.join(lines) + '\n'


def verdicts(rows: List[Row]) -> str:
    """One line: which targets pass and which miss."""
    passed = [r.name.split(':')[0] for r in rows if r.passed is True]
    missed = [r.name.split(':')[0] for r in rows if r.passed is False]
    return (f'PASS: {", ".join(passed) or "none"}; MISS: {", ".join(missed) or "none"}')

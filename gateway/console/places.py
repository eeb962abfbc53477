"""Country and jurisdiction codes (ISO 3166-1 alpha-2) with their names, for people who do not
know every code by heart. A code this table lacks is shown as it is."""

from __future__ import annotations

from collections.abc import Iterable

NAMES = {
    "AT": "Austria", "BE": "Belgium", "BG": "Bulgaria", "CA": "Canada", "CH": "Switzerland",
    "CN": "China", "CY": "Cyprus", "CZ": "Czechia", "DE": "Germany", "DK": "Denmark",
    "EE": "Estonia", "ES": "Spain", "FI": "Finland", "FR": "France", "GB": "United Kingdom",
    "GR": "Greece", "HR": "Croatia", "HU": "Hungary", "IE": "Ireland", "IL": "Israel",
    "IN": "India", "IS": "Iceland", "IT": "Italy", "JP": "Japan", "KR": "South Korea",
    "LI": "Liechtenstein", "LT": "Lithuania", "LU": "Luxembourg", "LV": "Latvia", "MT": "Malta",
    "NL": "Netherlands", "NO": "Norway", "NZ": "New Zealand", "PL": "Poland", "PT": "Portugal",
    "RO": "Romania", "RU": "Russia", "SE": "Sweden", "SG": "Singapore", "SI": "Slovenia",
    "SK": "Slovakia", "AE": "United Arab Emirates", "US": "United States", "UY": "Uruguay",
    "AR": "Argentina", "BR": "Brazil", "AU": "Australia",
}  # fmt: skip


def place(code: str) -> str:
    name = NAMES.get(code)
    return f"{name} ({code})" if name else code


def named(rows: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
    return [(place(code), n) for code, n in rows]

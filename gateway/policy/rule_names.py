"""Rule ids in words, for people who do not read policy YAML: the console and the audit report.

A rule id is what the engine and the audit record use (`inference_country`,
`attestation:signed_dpa`, `data_class[secret].self_hosted`); `describe` turns it into a sentence
fragment that names the rule, and keeps the id beside it wherever it is shown.
"""

from __future__ import annotations

import re

RULES = {
    "model_allowlist": "The model is on the tenant's list of allowed models",
    "inference_country": "Inference runs in an allowed country",
    "operator_control": "The operator and its controlling companies are in allowed jurisdictions",
    "weights_origin": "The model's weights come from an allowed country",
    "open_weights": "The model's weights are open",
    "self_hosted": "The deployment is self-hosted",
}

ATTESTATIONS = {
    "zero_data_retention": "a zero data retention commitment",
    "no_training_on_inputs": "a commitment not to train on inputs",
    "signed_dpa": "a signed data processing agreement (DPA)",
    "secnumcloud": "SecNumCloud certification",
    "bsi_c5": "BSI C5 certification",
    "iso_27001": "ISO 27001 certification",
    "hds": "HDS (health data hosting) certification",
}

_DATA_CLASS = re.compile(r"^data_class\[(?P<name>[^\]]+)\]\.(?P<rule>.+)$")


def describe(rule: str) -> str:
    """The rule in words; an id this table does not know is returned as it is."""
    scoped = _DATA_CLASS.match(rule)
    if scoped:
        return f"{describe(scoped['rule'])}, for data classified {scoped['name']!r}"
    if rule.startswith("attestation:"):
        kind = rule.removeprefix("attestation:")
        held = ATTESTATIONS.get(kind, f"a valid {kind.replace('_', ' ')} attestation")
        return f"The operator holds {held}, not expired"
    return RULES.get(rule, rule)

"""Normalisation rules per profile attribute: which attributes are cleaned, and how.

A `Normalizer` maps attribute names to named steps. Steps always run in one fixed order, whatever order a
configuration lists them in, so that normalising twice changes nothing:

    collapse_whitespace (every Unicode whitespace -> one ASCII space) -> remove_invisible (Cc, Cf, Cs)
    -> lowercase -> nfc -> collapse_whitespace again -> strip

Only strings are touched; None, numbers, booleans and lists pass through unchanged.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from okta_sync.errors import NormalizerConfigError
from okta_sync.sync.profile_attributes import DEFAULT_NORMALIZED_ATTRIBUTES

NFC = "nfc"
REMOVE_INVISIBLE = "remove_invisible"
COLLAPSE_WHITESPACE = "collapse_whitespace"
STRIP = "strip"
LOWERCASE = "lowercase"

STEP_NAMES: frozenset[str] = frozenset({NFC, REMOVE_INVISIBLE, COLLAPSE_WHITESPACE, STRIP, LOWERCASE})
# "clean" is shorthand for the conservative default; "none" leaves an attribute alone.
CLEAN: frozenset[str] = frozenset({NFC, REMOVE_INVISIBLE, COLLAPSE_WHITESPACE, STRIP})
_ALIASES: dict[str, frozenset[str]] = {"clean": CLEAN, "none": frozenset()}

# Control (Cc), format/zero-width (Cf: U+200B, U+200D, U+2060, U+FEFF, U+00AD, ...) and lone surrogates (Cs),
# which cannot be sent as UTF-8 at all.
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs"})
_SPACE_RUN = re.compile(" {2,}")


@dataclass(frozen=True)
class Steps:
    """A set of named steps, applied in the fixed order described in the module docstring."""

    names: frozenset[str]

    def apply(self, value: str) -> str:
        names = self.names
        if COLLAPSE_WHITESPACE in names:
            value = "".join(" " if ch.isspace() else ch for ch in value)
        if REMOVE_INVISIBLE in names:
            value = "".join(ch for ch in value if ch == " " or not _is_invisible(ch))
        if LOWERCASE in names:
            value = value.lower()
        if NFC in names:
            value = unicodedata.normalize("NFC", value)
        if COLLAPSE_WHITESPACE in names:
            value = _SPACE_RUN.sub(" ", "".join(" " if ch.isspace() else ch for ch in value))
        if STRIP in names:
            value = value.strip()
        return value


def _is_invisible(ch: str) -> bool:
    return unicodedata.category(ch) in _INVISIBLE_CATEGORIES and not ch.isspace()


@dataclass(frozen=True)
class Normalizer:
    """Which attributes are normalised and with which steps.

    `rules` maps an attribute to its steps. With `all_strings`, every other string attribute not in `exclude`
    gets `default_steps` too (custom attributes included).
    """

    rules: Mapping[str, Steps] = field(default_factory=dict)
    default_steps: Steps = Steps(CLEAN)
    all_strings: bool = False
    exclude: frozenset[str] = frozenset()

    @classmethod
    def default(cls) -> Normalizer:
        steps = Steps(CLEAN)
        return cls(rules={name: steps for name in DEFAULT_NORMALIZED_ATTRIBUTES}, default_steps=steps)

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | str | None) -> Normalizer:
        """Build from a plain dict or its JSON text, e.g. an Airflow param or a connection extra.

        Keys (all optional):
          default_steps  steps for the default attributes and `include`; default ["clean"]
          attributes     {attribute: [steps] or "clean" or "none"}: per-attribute steps, overriding the default
          include        extra attributes that get `default_steps`
          exclude        attributes never touched (wins over everything)
          all_strings    true: every string attribute not excluded gets `default_steps`
          use_defaults   false: start from no attributes instead of DEFAULT_NORMALIZED_ATTRIBUTES
        Example: {"attributes": {"email": ["clean", "lowercase"]}, "exclude": ["nickName"]}
        """
        if config is None:
            return cls.default()
        if isinstance(config, str):
            try:
                config = json.loads(config)
            except json.JSONDecodeError as exc:
                raise NormalizerConfigError(f"normalisation config is not valid JSON: {exc}") from None
        if not isinstance(config, Mapping):
            raise NormalizerConfigError(f"normalisation config must be an object, got {type(config).__name__}")
        known = {"default_steps", "attributes", "include", "exclude", "all_strings", "use_defaults"}
        unknown = sorted(set(config) - known)
        if unknown:
            raise NormalizerConfigError(f"unknown normalisation config keys {unknown}; known: {sorted(known)}")
        default_steps = parse_steps(config.get("default_steps", ["clean"]), "default_steps")
        use_defaults = _boolean(config.get("use_defaults", True), "use_defaults")
        rules: dict[str, Steps] = {}
        if use_defaults:
            rules.update({name: default_steps for name in DEFAULT_NORMALIZED_ATTRIBUTES})
        for name in _names(config.get("include", []), "include"):
            rules[name] = default_steps
        attributes = config.get("attributes", {})
        if not isinstance(attributes, Mapping):
            raise NormalizerConfigError("normalisation config 'attributes' must be an object {attribute: steps}")
        for name, steps in attributes.items():
            rules[str(name)] = parse_steps(steps, f"attributes.{name}")
        exclude = frozenset(_names(config.get("exclude", []), "exclude"))
        for name in exclude:
            rules.pop(name, None)
        return cls(
            rules=rules,
            default_steps=default_steps,
            all_strings=_boolean(config.get("all_strings", False), "all_strings"),
            exclude=exclude,
        )

    def steps_for(self, attribute: str) -> Steps | None:
        if attribute in self.exclude:
            return None
        steps = self.rules.get(attribute)
        if steps is None and self.all_strings:
            return self.default_steps
        return steps

    def normalize_value(self, attribute: str, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        steps = self.steps_for(attribute)
        return value if steps is None else steps.apply(value)

    def normalize_profile(self, profile: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of `profile` with every attribute normalised by its rule."""
        return {name: self.normalize_value(name, value) for name, value in profile.items()}


def parse_steps(spec: Any, where: str) -> Steps:
    """Steps from "clean", "none", one step name, or a list of those."""
    items = [spec] if isinstance(spec, str) else spec
    if not isinstance(items, (list, tuple)):
        raise NormalizerConfigError(f"{where}: steps must be a name or a list of names, got {spec!r}")
    names: set[str] = set()
    for item in items:
        if not isinstance(item, str):
            raise NormalizerConfigError(f"{where}: step {item!r} is not a name")
        if item in _ALIASES:
            names |= _ALIASES[item]
        elif item in STEP_NAMES:
            names.add(item)
        else:
            choices = sorted(STEP_NAMES | set(_ALIASES))
            raise NormalizerConfigError(f"{where}: unknown step {item!r}; known steps: {choices}")
    return Steps(frozenset(names))


def _names(value: Any, where: str) -> Iterable[str]:
    if isinstance(value, str) or not isinstance(value, (list, tuple, set, frozenset)):
        raise NormalizerConfigError(f"normalisation config '{where}' must be a list of attribute names")
    for name in value:
        if not isinstance(name, str):
            raise NormalizerConfigError(f"normalisation config '{where}': {name!r} is not an attribute name")
        yield name


def _boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise NormalizerConfigError(f"normalisation config '{where}' must be true or false, got {value!r}")
    return value

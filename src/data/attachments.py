"""What a source format attaches to its samples beside the inputs, stored beside the prepared shards.

A reader puts a record on each sample under the attachment's name (`Sample.attached["vqa"]`: a question's ids and
human answers). Preparation hands every split's records, in the split's index order, to the attachment registered
under that name, which writes its files into the prepared folder and returns meta.json's entry of that name (the files
it wrote under "files"). A set prepared --like a reference is handed the reference's entry, so that what the reference
fixed (VQA's answer vocabulary) stays. An attachment's settings are a `prepare.<name>` section of the config.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from src.config import PrepareConfig, register_section, with_section
from src.data.errors import PrepareError


@dataclass(frozen=True)
class Attachment:
    # write(root, {split: records in index order}, its prepare.<name> settings or None, the reference's meta entry
    # or None) -> meta.json's entry
    write: Callable[[Path, Dict[str, list], Any, Optional[dict]], dict]
    settings: Optional[type] = None  # the dataclass of its prepare.<name> section


ATTACHMENTS: Dict[str, Attachment] = {}


def register_attachment(name: str, attachment: Attachment, renamed: Optional[Dict[str, str]] = None) -> None:
    """`renamed`: its settings' keys as an earlier version wrote them (old dotted key -> new one)."""
    if name in ATTACHMENTS:
        raise ValueError(f"attachment '{name}' is registered twice")
    ATTACHMENTS[name] = attachment
    if attachment.settings is not None:
        register_section(name, attachment.settings, renamed, under="prepare")


def collect(records: Dict[str, Dict[str, list]], split: str, attached: Dict[str, Any], where: str) -> None:
    """Add one sample's records (`attached`, by name) to `records` (name -> split -> list; None where it has none)."""
    unknown = [name for name in attached if name not in ATTACHMENTS]
    if unknown:
        raise PrepareError(f"{where}: no attachment '{unknown[0]}' is registered (known: {', '.join(ATTACHMENTS)})")
    for name in ATTACHMENTS:
        records.setdefault(name, {}).setdefault(split, []).append(attached.get(name))


def write_attachments(root: Path, records: Dict[str, Dict[str, list]], prep: PrepareConfig,
                      reference: Dict[str, dict]) -> Dict[str, dict]:
    """Each attachment's files written under `root`; meta.json's entries by name (only those some sample has)."""
    entries = {}
    for name, by_split in records.items():
        given = [r is not None for rs in by_split.values() for r in rs]
        if not any(given):
            continue
        if not all(given):
            raise PrepareError(f"the set mixes samples with a {name} record and samples without one")
        attachment = ATTACHMENTS[name]
        settings = getattr(prep, name) if attachment.settings is not None else None
        entries[name] = attachment.write(root, {sp: rs for sp, rs in by_split.items() if rs}, settings,
                                         reference.get(name))
    return entries


def files_of(entries: Dict[str, dict]) -> List[str]:
    return [f for entry in entries.values() for f in entry.get("files", {}).values()]


def reference_entries(meta: dict) -> Dict[str, dict]:
    """A reference set's attachment entries, which a set prepared --like it keeps."""
    return {name: meta[name] for name in ATTACHMENTS if meta.get(name)}


def own_settings(prep: PrepareConfig, own: PrepareConfig, meta: dict) -> PrepareConfig:
    """The reference's preparation settings `prep`, with the caller's (`own`) for each attachment the reference has
    no entry of (a pre-training set has no answer vocabulary: a VQA set --like it makes its own)."""
    for name, attachment in ATTACHMENTS.items():
        if attachment.settings is not None and not meta.get(name):
            prep = with_section(prep, name, getattr(own, name))
    return prep

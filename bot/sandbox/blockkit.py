"""Block Kit limit checks, answered the way Slack words them.

Slack answers a bad message with ``invalid_blocks`` and ``errors`` such as
``"must be less than 3001 characters [json-pointer:/blocks/0/text/text]"`` (invalid_blocks.json) and
``"no more than 25 items allowed [json-pointer:/blocks/1/elements]"``. The numbers come from
Slack's Block Kit reference. Hand-written rather than slack_sdk.models: those models drop unknown block types
with a warning, check fewer limits and name no json-pointer, so they cannot answer like Slack.
"""

from __future__ import annotations

from typing import Any

MESSAGE_BLOCKS = 50
SURFACE_BLOCKS = 100  # modals and Home tabs

_BLOCK_TYPES = {
    "section", "header", "context", "actions", "divider", "input", "image",
    "rich_text", "markdown", "video", "file", "table", "context_actions",
}  # fmt: skip
_TEXT_TYPES = {"plain_text", "mrkdwn"}
_INPUT_ELEMENTS = {
    "plain_text_input", "static_select", "multi_static_select", "users_select", "multi_users_select",
    "conversations_select", "multi_conversations_select", "channels_select", "multi_channels_select",
    "external_select", "multi_external_select", "checkboxes", "radio_buttons", "datepicker", "timepicker",
    "datetimepicker", "number_input", "email_text_input", "url_text_input", "rich_text_input", "file_input",
}  # fmt: skip
_ACTION_ELEMENTS = _INPUT_ELEMENTS | {"button", "overflow", "workflow_button"}


class _Checker:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def fail(self, message: str, pointer: str) -> None:
        self.errors.append(f"{message} [json-pointer:{pointer}]")

    def length(self, value: Any, limit: int, pointer: str, *, minimum: int = 0) -> None:
        if not isinstance(value, str):
            self.fail("must be a string", pointer)
        elif len(value) > limit:
            self.fail(f"must be less than {limit + 1} characters", pointer)
        elif len(value) < minimum:
            self.fail(f"must be more than {minimum - 1} characters", pointer)

    def items(self, value: Any, limit: int, pointer: str, *, minimum: int = 0) -> list[Any]:
        if not isinstance(value, list):
            self.fail("must be an array", pointer)
            return []
        if len(value) > limit:
            self.fail(f"no more than {limit} items allowed", pointer)
        if len(value) < minimum:
            self.fail(f"must provide at least {minimum} items", pointer)
        return value

    def text(self, obj: Any, limit: int, pointer: str, *, plain_only: bool = False, minimum: int = 1) -> None:
        allowed = {"plain_text"} if plain_only else _TEXT_TYPES
        if not isinstance(obj, dict) or obj.get("type") not in allowed:
            self.fail("must be a valid enum value" if isinstance(obj, dict) else "must be an object", pointer)
            return
        before = len(self.errors)
        self.length(obj.get("text"), limit, pointer + "/text", minimum=minimum)
        if len(self.errors) > before and not plain_only:
            # Slack reports the text object as matching neither schema, then the reason (invalid_blocks.json).
            self.errors.insert(before, f"failed to match all allowed schemas [json-pointer:{pointer}]")

    def element(self, el: Any, pointer: str, allowed: set[str]) -> None:
        if not isinstance(el, dict) or el.get("type") not in allowed:
            self.fail("failed to match all allowed schemas", pointer)
            return
        if "action_id" in el:
            self.length(el["action_id"], 255, pointer + "/action_id", minimum=1)
        kind = el["type"]
        if kind == "button":
            self.text(el.get("text"), 75, pointer + "/text", plain_only=True)
            if "value" in el:
                self.length(el["value"], 2000, pointer + "/value")
            if "url" in el:
                self.length(el["url"], 3000, pointer + "/url")
            if "style" in el and el["style"] not in ("primary", "danger"):
                self.fail("must be a valid enum value", pointer + "/style")
        elif kind == "plain_text_input":
            if "max_length" in el and (not isinstance(el["max_length"], int) or el["max_length"] > 3000):
                self.fail("must be less than 3001", pointer + "/max_length")
            if "placeholder" in el:
                self.text(el["placeholder"], 150, pointer + "/placeholder", plain_only=True)
        for key in ("options", "option_groups"):
            if key in el:
                for i, opt in enumerate(self.items(el[key], 100, f"{pointer}/{key}")):
                    if isinstance(opt, dict) and key == "options":
                        self.text(opt.get("text"), 75, f"{pointer}/{key}/{i}/text")
                        self.length(opt.get("value"), 150, f"{pointer}/{key}/{i}/value", minimum=1)

    def block(self, block: Any, pointer: str, *, surface: str) -> None:
        if not isinstance(block, dict) or block.get("type") not in _BLOCK_TYPES:
            self.fail("failed to match all allowed schemas", pointer)
            return
        if "block_id" in block:
            self.length(block["block_id"], 255, pointer + "/block_id", minimum=1)
        kind = block["type"]
        if kind == "section":
            if "text" not in block and "fields" not in block:
                self.fail("must provide either text or fields", pointer)
            if "text" in block:
                self.text(block["text"], 3000, pointer + "/text")
            if "fields" in block:
                for i, f in enumerate(self.items(block["fields"], 10, pointer + "/fields", minimum=1)):
                    self.text(f, 2000, f"{pointer}/fields/{i}")
            if "accessory" in block:
                self.element(block["accessory"], pointer + "/accessory", _ACTION_ELEMENTS | {"image"})
        elif kind == "header":
            self.text(block.get("text"), 150, pointer + "/text", plain_only=True)
        elif kind == "context":
            for i, el in enumerate(self.items(block.get("elements"), 10, pointer + "/elements", minimum=1)):
                if isinstance(el, dict) and el.get("type") == "image":
                    continue
                self.text(el, 3000, f"{pointer}/elements/{i}")
        elif kind == "actions":
            for i, el in enumerate(self.items(block.get("elements"), 25, pointer + "/elements", minimum=1)):
                self.element(el, f"{pointer}/elements/{i}", _ACTION_ELEMENTS)
        elif kind == "input":
            self.text(block.get("label"), 2000, pointer + "/label", plain_only=True)
            if "hint" in block:
                self.text(block["hint"], 2000, pointer + "/hint", plain_only=True)
            self.element(block.get("element"), pointer + "/element", _INPUT_ELEMENTS)
        elif kind == "markdown":
            self.length(block.get("text"), 12000, pointer + "/text", minimum=1)
        elif kind == "image":
            self.length(block.get("image_url", ""), 3000, pointer + "/image_url")
            self.length(block.get("alt_text"), 2000, pointer + "/alt_text", minimum=1)

    def blocks(self, blocks: Any, pointer: str, *, limit: int, surface: str) -> None:
        seen: set[str] = set()
        for i, block in enumerate(self.items(blocks, limit, pointer)):
            self.block(block, f"{pointer}/{i}", surface=surface)
            block_id = block.get("block_id") if isinstance(block, dict) else None
            if isinstance(block_id, str):
                if block_id in seen:
                    # (inferred wording) Slack refuses repeated block_ids within one message or view.
                    self.fail("duplicate block_id", f"{pointer}/{i}/block_id")
                seen.add(block_id)


def check_message_blocks(blocks: Any) -> list[str]:
    """Errors for a message's ``blocks`` (chat.postMessage/update/postEphemeral, response_url)."""
    checker = _Checker()
    checker.blocks(blocks, "/blocks", limit=MESSAGE_BLOCKS, surface="message")
    return checker.errors


def check_view(view: Any) -> list[str]:
    """Errors for a view (views.open/push/update/publish, ``response_action: update|push``)."""
    checker = _Checker()
    if not isinstance(view, dict):
        return ["must be an object [json-pointer:/view]"]
    kind = view.get("type")
    if kind not in ("modal", "home"):
        checker.fail("must be a valid enum value", "/view/type")
        return checker.errors
    if kind == "modal":
        checker.text(view.get("title"), 24, "/view/title", plain_only=True)
        for key in ("submit", "close"):
            if view.get(key) is not None:
                checker.text(view[key], 24, f"/view/{key}", plain_only=True)
        has_input = any(isinstance(b, dict) and b.get("type") == "input" for b in view.get("blocks") or [])
        if has_input and view.get("submit") is None:
            checker.fail("must provide submit when the view has input blocks", "/view/submit")
    checker.blocks(view.get("blocks"), "/view/blocks", limit=SURFACE_BLOCKS, surface=kind)
    for key, limit in (("private_metadata", 3000), ("callback_id", 255), ("external_id", 255)):
        if key in view and view[key] is not None:
            checker.length(view[key], limit, f"/view/{key}")
    return checker.errors

"""A small local Discord for end-to-end tests: REST and gateway on 127.0.0.1.

The real discord.py client talks to it over real HTTP and a real websocket
(see facts/discord.md): point the library at it with `FakeDiscord.patch_client()`.
It serves what the radio bot uses and behaves like Discord where that matters
to the bot:

- login (`GET /users/@me`, `GET /oauth2/applications/@me`) refuses any token
  but its own with 401, as Discord does; the application names its `owner`,
  or its `team` (members with their roles) when one is set;
- the gateway sends HELLO, READY and one GUILD_CREATE per guild (text frames,
  no compression), answers heartbeats, and turns the bot's voice state
  updates (op 4) into VOICE_STATE_UPDATE and VOICE_SERVER_UPDATE events;
- `PUT .../commands` is the command sync; the payloads are kept for checks;
- interactions: `invoke()` sends INTERACTION_CREATE as a Discord client would,
  typing each option from the synced command (but checking no `Range`: values
  arrive raw, as from a misbehaving client); a subcommand of a group is named
  as a member types it, `"radio_dataset add"`. The interaction callback answers
  404 "Unknown interaction" after 3 s, like Discord. After a deferral the
  first follow-up fills the deferred message and keeps its ephemeral flag,
  unless the original response was deleted first;
- channel messages can be posted (JSON, or multipart with files), edited
  (JSON or multipart: new files, and the `attachments` kept by id, as
  Discord does; also through the interaction webhook), fetched and deleted;
  every message the bot sends keeps its `allowed_mentions`, its components
  (buttons) and its files for checks, and counts the edits that brought files;
- message components: `press()` sends a MESSAGE_COMPONENT interaction (type
  3, with `data.custom_id` and the message) as a client does when a member
  presses a button; the bot may answer by updating the message (callback
  type 7) or as usual;
- direct messages: the bot opens a DM channel (`POST /users/@me/channels`) and
  posts there; a user whose DMs are closed (`FakeUser.dms_open = False`) gets
  Discord's 403 error 50007 "Cannot send messages to this user".

Test helpers change the guild (members joining or leaving voice) and wait for
conditions with a deadline (`wait_for`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import itertools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import discord
import yarl
from aiohttp import BodyPartReader, WSMsgType, web

JSON_TYPE = "application/json"  # exactly: discord.py rejects a charset suffix
INTERACTION_TIMEOUT = 3.0  # seconds Discord waits for the first answer
EPHEMERAL = 1 << 6

# Option types of application commands (Discord's numbering).
SUB_COMMAND, SUB_COMMAND_GROUP, STRING, INTEGER, BOOLEAN = 1, 2, 3, 4, 5
USER, CHANNEL, ROLE, MENTIONABLE, NUMBER, ATTACHMENT = 6, 7, 8, 9, 10, 11

_ids = itertools.count(1_200_000_000_000_000_000)


def snowflake() -> int:
    return next(_ids)


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat()


def _response(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(data).encode(), status=status, headers={"Content-Type": JSON_TYPE})


def _error(status: int, message: str, code: int = 0) -> web.Response:
    return _response({"message": message, "code": code}, status)


@dataclass
class FakeUser:
    id: int
    name: str
    bot: bool = False
    dms_open: bool = True  # False: DMs from the bot answer 403 (code 50007)

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "username": self.name,
            "global_name": self.name,
            "discriminator": "0",
            "avatar": None,
            "bot": self.bot,
        }


@dataclass
class FakeRole:
    id: int
    name: str
    permissions: int
    position: int

    def payload(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "name": self.name,
            "color": 0,
            "hoist": False,
            "position": self.position,
            "permissions": str(self.permissions),
            "managed": False,
            "mentionable": False,
            "flags": 0,
        }


@dataclass
class FakeChannel:
    id: int
    guild_id: int
    name: str
    type: int  # 0 text, 2 voice
    position: int

    def payload(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": str(self.id),
            "guild_id": str(self.guild_id),
            "type": self.type,
            "name": self.name,
            "position": self.position,
            "permission_overwrites": [],
            "parent_id": None,
            "nsfw": False,
        }
        if self.type == 2:
            data.update(bitrate=64000, user_limit=0, rtc_region=None)
        else:
            data.update(topic=None, rate_limit_per_user=0, last_message_id=None)
        return data


@dataclass
class FakeMember:
    user: FakeUser
    roles: list[int] = field(default_factory=list)
    nick: str | None = None  # the member's name in this guild


@dataclass
class FakeAttachment:
    """A file a user attaches to a command; served at `url` by the fake."""

    id: int
    filename: str
    data: bytes
    content_type: str | None = None
    size: int | None = None  # what Discord reports; the real size by default


#: Discord's limit on one request's size, attachments included.
MAX_REQUEST_BYTES = 25 * 2**20


@dataclass
class FakeFile:
    """A file the bot attached to a message."""

    filename: str
    data: bytes
    content_type: str | None = None
    id: int = field(default_factory=lambda: snowflake())


@dataclass
class FakeMessage:
    id: int
    channel_id: int
    content: str = ""
    embeds: list[dict[str, Any]] = field(default_factory=list)
    flags: int = 0
    allowed_mentions: dict[str, Any] | None = None
    edits: int = 0
    components: list[dict[str, Any]] = field(default_factory=list)
    files: list[FakeFile] = field(default_factory=list)
    file_edits: int = 0  # edits that brought new files

    def forged(self, custom_id: str) -> FakeMessage:
        """A copy of this message whose first button has `custom_id` instead: what a
        hostile payload for a press could look like."""
        rows = json.loads(json.dumps(self.components))
        next(item for row in rows for item in row["components"])["custom_id"] = custom_id
        return dataclasses.replace(self, components=rows)

    @property
    def buttons(self) -> list[dict[str, Any]]:
        """Every button of the message's action rows."""
        return [item for row in self.components for item in row.get("components", []) if item.get("type") == 2]

    def button(self, custom_id_prefix: str) -> dict[str, Any]:
        """The button whose custom id starts with `custom_id_prefix`."""
        for button in self.buttons:
            if button.get("custom_id", "").startswith(custom_id_prefix):
                return button
        raise KeyError(f"no button {custom_id_prefix!r} on message {self.id}")

    @property
    def ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def text(self) -> str:
        """Content and every embed's visible text, for assertions."""
        parts = [self.content]
        for embed in self.embeds:
            parts.append((embed.get("author") or {}).get("name", ""))
            parts += [embed.get("title", ""), embed.get("description", "")]
            parts += [f"{f.get('name', '')}: {f.get('value', '')}" for f in embed.get("fields", [])]
            parts.append((embed.get("footer") or {}).get("text", ""))
        return "\n".join(part for part in parts if part)

    def update(self, body: dict[str, Any]) -> None:
        if "content" in body:
            self.content = body["content"] or ""
        if "embeds" in body:
            self.embeds = body["embeds"] or []
        if "allowed_mentions" in body:
            self.allowed_mentions = body["allowed_mentions"]
        if "components" in body:
            self.components = body["components"] or []

    def edit(self, body: dict[str, Any], files: list[FakeFile]) -> None:
        """An edit: new content, and the attachments Discord keeps (those listed by id
        in `attachments`, plus the new files; all of them when the key is absent)."""
        self.update(body)
        self.edits += 1
        if "attachments" in body:
            kept = {str(item.get("id")) for item in body["attachments"] or []}
            self.files = [f for f in self.files if str(f.id) in kept]
        if files:
            self.files = [*self.files, *files]
            self.file_edits += 1

    def payload(self, author: FakeUser, guild_id: int | None) -> dict[str, Any]:
        data = {
            "id": str(self.id),
            "channel_id": str(self.channel_id),
            "author": author.payload(),
            "content": self.content,
            "timestamp": _now_iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [
                {
                    "id": str(f.id),
                    "filename": f.filename,
                    "size": len(f.data),
                    "url": f"https://cdn.invalid/{f.filename}",
                    "proxy_url": f"https://cdn.invalid/{f.filename}",
                }
                for f in self.files
            ],
            "embeds": self.embeds,
            "pinned": False,
            "type": 0,
            "flags": self.flags,
            "components": self.components,
        }
        if guild_id is not None:
            data["guild_id"] = str(guild_id)
        return data


@dataclass
class FakeInteraction:
    """One interaction and everything the bot answered to it."""

    id: int
    token: str
    name: str
    user: FakeUser
    channel_id: int
    created: float
    kind: int  # 2 command, 3 message component, 4 autocomplete
    callbacks: list[dict[str, Any]] = field(default_factory=list)
    callback_delays: list[float] = field(default_factory=list)
    original: FakeMessage | None = None
    original_state: str = "none"  # none, loading, sent, deleted
    followups: list[FakeMessage] = field(default_factory=list)
    choices: list[dict[str, Any]] | None = None
    late_callbacks: int = 0
    message: FakeMessage | None = None  # the message whose component was pressed

    @property
    def messages(self) -> list[FakeMessage]:
        """What the user sees now: the original response (unless still loading or
        deleted) and the follow-ups."""
        shown = [self.original] if self.original and self.original_state == "sent" else []
        return shown + self.followups

    @property
    def answered_in(self) -> float | None:
        return self.callback_delays[0] if self.callback_delays else None


class FakeGuild:
    def __init__(self, fake: FakeDiscord, name: str, owner: FakeUser):
        self.fake = fake
        self.id = snowflake()
        self.name = name
        self.owner = owner
        self.roles: dict[int, FakeRole] = {}
        self.channels: dict[int, FakeChannel] = {}
        self.members: dict[int, FakeMember] = {}
        self.voice_states: dict[int, int] = {}  # user id -> voice channel id
        everyone = discord.Permissions(
            view_channel=True,
            connect=True,
            speak=True,
            send_messages=True,
            use_application_commands=True,
            read_message_history=True,
            embed_links=True,
        )
        self.everyone = self.add_role("@everyone", everyone.value, role_id=self.id, position=0)

    # --- building -------------------------------------------------------------
    def add_role(self, name: str, permissions: int = 0, *, role_id: int | None = None, position: int = 1) -> FakeRole:
        role = FakeRole(role_id or snowflake(), name, permissions, position)
        self.roles[role.id] = role
        return role

    async def create_role(self, name: str, permissions: int = 0) -> FakeRole:
        """A role made while the bot is connected: Discord tells it (GUILD_ROLE_CREATE)."""
        role = self.add_role(name, permissions)
        await self.fake.dispatch("GUILD_ROLE_CREATE", {"guild_id": str(self.id), "role": role.payload()})
        return role

    def add_channel(self, name: str, *, voice: bool = False) -> FakeChannel:
        channel = FakeChannel(snowflake(), self.id, name, 2 if voice else 0, len(self.channels))
        self.channels[channel.id] = channel
        return channel

    def add_member(self, user: FakeUser, *roles: FakeRole) -> FakeMember:
        member = FakeMember(user, [role.id for role in roles])
        self.members[user.id] = member
        return member

    def permissions(self, user: FakeUser) -> int:
        """The member's computed permissions, as Discord puts them in an interaction."""
        if user.id == self.owner.id:
            return discord.Permissions.all().value
        bits = self.everyone.permissions
        for role_id in self.members[user.id].roles:
            bits |= self.roles[role_id].permissions
        if bits & discord.Permissions(administrator=True).value:
            return discord.Permissions.all().value
        return bits

    def listeners(self, channel: FakeChannel) -> list[int]:
        return [uid for uid, cid in self.voice_states.items() if cid == channel.id]

    # --- payloads -------------------------------------------------------------
    def member_payload(self, user: FakeUser, *, with_permissions: bool = False) -> dict[str, Any]:
        data: dict[str, Any] = {
            "user": user.payload(),
            "roles": [str(r) for r in self.members[user.id].roles],
            "joined_at": _now_iso(),
            "deaf": False,
            "mute": False,
            "flags": 0,
            "nick": self.members[user.id].nick,
            "avatar": None,
            "premium_since": None,
            "pending": False,
            "communication_disabled_until": None,
        }
        if with_permissions:
            data["permissions"] = str(self.permissions(user))
        return data

    def voice_state_payload(self, user_id: int, channel_id: int | None) -> dict[str, Any]:
        return {
            "guild_id": str(self.id),
            "channel_id": None if channel_id is None else str(channel_id),
            "user_id": str(user_id),
            "member": self.member_payload(self.members[user_id].user),
            "session_id": f"session-{user_id}",
            "deaf": False,
            "mute": False,
            "self_deaf": False,
            "self_mute": False,
            "self_video": False,
            "suppress": False,
            "request_to_speak_timestamp": None,
        }

    def create_payload(self) -> dict[str, Any]:
        # Without the members intent Discord sends the bot and the members in voice.
        shown = {self.fake.bot.id, *self.voice_states}
        return {
            "id": str(self.id),
            "name": self.name,
            "icon": None,
            "owner_id": str(self.owner.id),
            "roles": [role.payload() for role in self.roles.values()],
            "emojis": [],
            "stickers": [],
            "features": [],
            "channels": [channel.payload() for channel in self.channels.values()],
            "members": [self.member_payload(self.members[uid].user) for uid in shown],
            "voice_states": [
                {k: v for k, v in self.voice_state_payload(uid, cid).items() if k != "member"}
                for uid, cid in self.voice_states.items()
            ],
            "threads": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "member_count": len(self.members),
            "large": False,
            "unavailable": False,
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "premium_tier": 0,
            "premium_progress_bar_enabled": False,
            "preferred_locale": "en-US",
            "system_channel_id": None,
            "afk_channel_id": None,
            "afk_timeout": 300,
        }

    # --- what members do ------------------------------------------------------
    async def set_voice(self, user: FakeUser, channel: FakeChannel | None) -> None:
        """The user joins (or, with None, leaves) a voice channel."""
        if channel is None:
            self.voice_states.pop(user.id, None)
        else:
            self.voice_states[user.id] = channel.id
        await self.fake.dispatch("VOICE_STATE_UPDATE", self.voice_state_payload(user.id, channel and channel.id))
        if user.id == self.fake.bot.id and channel is not None:
            await self.fake.dispatch(
                "VOICE_SERVER_UPDATE",
                {"token": "voice-token", "guild_id": str(self.id), "endpoint": f"127.0.0.1:{self.fake.port}"},
            )


class _Session:
    def __init__(self, ws: web.WebSocketResponse):
        self.ws = ws
        self.seq = 0
        self.lock = asyncio.Lock()
        self.shard = (0, 1)  # (shard id, shard count), as IDENTIFY says

    def serves(self, guild_id: int) -> bool:
        """Discord's rule: a guild belongs to shard (guild_id >> 22) % shard count."""
        return (guild_id >> 22) % self.shard[1] == self.shard[0]

    async def send(self, op: int, data: Any, event: str | None = None) -> None:
        async with self.lock:
            payload: dict[str, Any] = {"op": op, "d": data, "s": None, "t": event}
            if op == 0:
                self.seq += 1
                payload["s"] = self.seq
            if not self.ws.closed:
                await self.ws.send_str(json.dumps(payload))


class FakeDiscord:
    """The fake. `async with FakeDiscord() as fake:` serves it on a free port."""

    def __init__(self, token: str = "fake-token.for-tests.only"):
        self.token = token
        self.bot = FakeUser(snowflake(), "Radio", bot=True)
        self.application_id = snowflake()
        self.owner = FakeUser(snowflake(), "owner")
        #: The application's team, (member, role) pairs: "admin", "developer", "read_only".
        self.team: list[tuple[FakeUser, str]] | None = None
        self.guilds: dict[int, FakeGuild] = {}
        self.global_commands: list[dict[str, Any]] = []
        self.guild_commands: dict[int, list[dict[str, Any]]] = {}
        self.command_syncs: list[tuple[int | None, list[dict[str, Any]]]] = []
        self.interactions: dict[int, FakeInteraction] = {}
        self.channel_messages: dict[int, list[FakeMessage]] = {}
        self.deleted_messages: list[FakeMessage] = []
        self.attachments: dict[str, FakeAttachment] = {}
        self.dm_channels: dict[int, FakeUser] = {}  # DM channel id -> the user
        self.direct_messages: dict[int, list[FakeMessage]] = {}  # user id -> DMs received
        self.refused_dms: list[int] = []  # user ids a DM was refused to (closed DMs)
        self.bot_voice_requests: list[dict[str, Any]] = []
        self.identifies = 0
        self.application_reads = 0
        self.sessions: list[_Session] = []
        self.port = 0
        self._changed = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._saved: tuple[str, yarl.URL] | None = None

    # --- life cycle -----------------------------------------------------------
    async def start(self) -> None:
        app = web.Application(client_max_size=MAX_REQUEST_BYTES)
        app.add_routes(
            [
                web.get("/gateway", self._gateway),
                web.get("/api/v10/gateway", self._gateway_url),
                web.get("/api/v10/gateway/bot", self._gateway_url),
                web.get("/api/v10/users/@me", self._me),
                web.get("/api/v10/oauth2/applications/@me", self._application),
                web.put("/api/v10/applications/{app}/commands", self._sync),
                web.put("/api/v10/applications/{app}/guilds/{guild}/commands", self._sync),
                web.post("/api/v10/users/@me/channels", self._open_dm),
                web.post("/api/v10/interactions/{id}/{token}/callback", self._callback),
                web.post("/api/v10/webhooks/{app}/{token}", self._followup),
                web.get("/api/v10/webhooks/{app}/{token}/messages/{message}", self._get_webhook),
                web.patch("/api/v10/webhooks/{app}/{token}/messages/{message}", self._edit_webhook),
                web.delete("/api/v10/webhooks/{app}/{token}/messages/{message}", self._delete_webhook),
                web.post("/api/v10/channels/{channel}/messages", self._post_message),
                web.get("/api/v10/channels/{channel}/messages/{message}", self._get_message),
                web.patch("/api/v10/channels/{channel}/messages/{message}", self._edit_message),
                web.delete("/api/v10/channels/{channel}/messages/{message}", self._delete_message),
                web.get("/attachments/{name}", self._attachment),
            ]
        )
        self._runner = web.AppRunner(app, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def close(self) -> None:
        for session in list(self.sessions):
            await session.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
        self.restore_client()

    async def __aenter__(self) -> FakeDiscord:
        await self.start()
        self.patch_client()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def patch_client(self) -> None:
        """Point discord.py (REST and gateway) at this fake."""
        self._saved = (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
        discord.http.Route.BASE = f"{self.base_url}/api/v10"
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(f"ws://127.0.0.1:{self.port}/gateway")

    def restore_client(self) -> None:
        if self._saved is not None:
            discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = self._saved
            self._saved = None

    # --- building the world ---------------------------------------------------
    def add_guild(self, name: str = "Test guild", owner: FakeUser | None = None) -> FakeGuild:
        """A guild with the bot in it (with a role that lets it speak and post), owned
        by `owner` (default: the application's owner)."""
        owner = owner or self.owner
        guild = FakeGuild(self, name, owner)
        self.guilds[guild.id] = guild
        guild.add_member(owner)
        bot_role = guild.add_role(
            "Radio",
            discord.Permissions(
                view_channel=True,
                connect=True,
                speak=True,
                send_messages=True,
                embed_links=True,
            ).value,
        )
        guild.add_member(self.bot, bot_role)
        return guild

    def add_user(self, guild: FakeGuild, name: str, *roles: FakeRole) -> FakeUser:
        user = FakeUser(snowflake(), name)
        guild.add_member(user, *roles)
        return user

    def add_attachment(
        self, filename: str, data: bytes, content_type: str | None = None, size: int | None = None
    ) -> FakeAttachment:
        attachment = FakeAttachment(snowflake(), filename, data, content_type, size)
        self.attachments[f"{attachment.id}-{filename}"] = attachment
        return attachment

    # --- waiting --------------------------------------------------------------
    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Wait until `predicate()` (or, for a coroutine function, its awaited result) is
        truthy, checked at every change of the fake and at least every 50 ms for
        changes elsewhere; return the value."""
        deadline = time.monotonic() + timeout
        while True:
            changed = self._changed
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(changed.wait(), min(left, 0.05))

    # --- gateway --------------------------------------------------------------
    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        guild_id = data.get("guild_id") if isinstance(data, dict) else None
        for session in list(self.sessions):
            if guild_id is None or session.serves(int(guild_id)):
                await session.send(0, data, event)
        self._notify()

    async def drop_gateway(self) -> None:
        """Close every gateway connection (a network blip); the client reconnects."""
        for session in list(self.sessions):
            await session.ws.close(code=4000)

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        session = _Session(ws)
        await session.send(10, {"heartbeat_interval": 41250})
        self.sessions.append(session)
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                payload = json.loads(message.data)
                await self._on_gateway(session, payload["op"], payload.get("d"))
        finally:
            self.sessions.remove(session)
            self._notify()
        return ws

    async def _on_gateway(self, session: _Session, op: int, data: Any) -> None:
        if op == 1:  # heartbeat
            await session.send(11, None)
        elif op == 2:  # identify
            if data.get("token") != self.token:
                await session.ws.close(code=4004, message=b"Authentication failed.")
                return
            self.identifies += 1
            session.shard = tuple(data.get("shard") or (0, 1))
            guilds = [guild for gid, guild in self.guilds.items() if session.serves(gid)]
            await session.send(
                0,
                {
                    "v": 10,
                    "user": self.bot.payload(),
                    "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
                    "shard": list(session.shard),
                    "session_id": f"session-{snowflake()}",
                    "resume_gateway_url": f"ws://127.0.0.1:{self.port}/gateway",
                    "application": {"id": str(self.application_id), "flags": 0},
                },
                "READY",
            )
            for guild in guilds:
                await session.send(0, guild.create_payload(), "GUILD_CREATE")
            self._notify()
        elif op == 6:  # resume
            await session.send(0, {}, "RESUMED")
        elif op == 4:  # the bot joins, moves or leaves voice
            self.bot_voice_requests.append(data)
            guild = self.guilds[int(data["guild_id"])]
            channel_id = data.get("channel_id")
            channel = guild.channels[int(channel_id)] if channel_id else None
            await guild.set_voice(self.bot, channel)

    # --- REST: login and commands ---------------------------------------------
    def _authorized(self, request: web.Request) -> bool:
        return request.headers.get("Authorization") == f"Bot {self.token}"

    async def _gateway_url(self, request: web.Request) -> web.Response:
        return _response(
            {
                "url": f"ws://127.0.0.1:{self.port}/gateway",
                "shards": 1,
                "session_start_limit": {"total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1},
            }
        )

    async def _me(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, "401: Unauthorized")
        return _response(self.bot.payload())

    async def _application(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, "401: Unauthorized")
        self.application_reads += 1
        data: dict[str, Any] = {
            "id": str(self.application_id),
            "name": self.bot.name,
            "description": "",
            "icon": None,
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": self.owner.payload(),
            "verify_key": "0" * 64,
            "flags": 0,
        }
        if self.team is not None:
            team_id = str(self.application_id + 1)
            # A team-owned application's owner is a pseudo-user named after the team.
            data["owner"] = {**self.owner.payload(), "id": team_id, "username": "team"}
            data["team"] = {
                "id": team_id,
                "name": "Radio team",
                "icon": None,
                "owner_user_id": str(self.team[0][0].id),
                "members": [
                    {
                        "membership_state": 2,
                        "team_id": team_id,
                        "user": user.payload(),
                        "role": role,
                        "permissions": ["*"],
                    }
                    for user, role in self.team
                ],
            }
        return _response(data)

    async def _sync(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, "401: Unauthorized")
        guild_id = int(request.match_info["guild"]) if "guild" in request.match_info else None
        body = await request.json()
        self.command_syncs.append((guild_id, body))
        registered = []
        for command in body:
            data = {
                **command,
                "id": str(snowflake()),
                "application_id": str(self.application_id),
                "version": str(snowflake()),
            }
            if guild_id is not None:
                data["guild_id"] = str(guild_id)
            registered.append(data)
        if guild_id is None:
            self.global_commands = registered
        else:
            self.guild_commands[guild_id] = registered
        self._notify()
        return _response(registered)

    def command(self, guild: FakeGuild, name: str) -> dict[str, Any]:
        """The synced command a member of `guild` sees under `name`."""
        for command in [*self.guild_commands.get(guild.id, []), *self.global_commands]:
            if command["name"] == name:
                return command
        raise KeyError(f"no command {name!r} was synced")

    # --- interactions ---------------------------------------------------------
    async def invoke(
        self,
        guild: FakeGuild,
        user: FakeUser,
        command: str,
        channel: FakeChannel | None = None,
        /,
        **options: Any,
    ) -> FakeInteraction:
        """A member runs `/command option:value ...` in `channel` (the first text channel)."""
        return await self._interact(guild, user, command, channel, options, focused=None)

    async def autocomplete(
        self, guild: FakeGuild, user: FakeUser, command: str, focused: str, /, **options: Any
    ) -> list[dict[str, Any]]:
        """What the bot suggests while the member types option `focused`."""
        interaction = await self._interact(guild, user, command, None, options, focused=focused)
        await self.wait_for(lambda: interaction.choices is not None, timeout=10)
        assert interaction.choices is not None
        return interaction.choices

    async def _interact(
        self,
        guild: FakeGuild,
        user: FakeUser,
        name: str,
        channel: FakeChannel | None,
        options: dict[str, Any],
        focused: str | None,
    ) -> FakeInteraction:
        group, _, sub = name.partition(" ")
        command = self.command(guild, group)
        channel = channel or next(c for c in guild.channels.values() if c.type == 0)
        declared = command
        if sub:
            declared = next(o for o in command.get("options", []) if o["type"] == SUB_COMMAND and o["name"] == sub)
        schema = {option["name"]: option for option in declared.get("options", [])}
        typed, resolved = [], {}
        for key, value in options.items():
            if key not in schema:
                raise KeyError(f"/{name} has no option {key!r}: it has {sorted(schema)}")
            kind = schema[key]["type"]
            option = {"name": key, "type": kind, "value": self._option_value(kind, value, resolved)}
            if key == focused:
                option["focused"] = True
            typed.append(option)
        if sub:
            typed = [{"name": sub, "type": SUB_COMMAND, "options": typed}]
        data: dict[str, Any] = {"id": command["id"], "name": group, "type": 1, "options": typed}
        if "guild_id" in command:
            data["guild_id"] = command["guild_id"]
        if resolved:
            data["resolved"] = resolved
        return await self._send_interaction(guild, user, channel, name, 2 if focused is None else 4, data)

    async def press(self, guild: FakeGuild, user: FakeUser, message: FakeMessage, custom_id: str) -> FakeInteraction:
        """A member presses the button `custom_id` on `message`. discord.py ignores a
        press whose custom id is not among the message's components, so a forged id
        comes with a message that carries it (`FakeMessage.forged`)."""
        channel = guild.channels[message.channel_id]
        data = {"custom_id": custom_id, "component_type": 2}
        return await self._send_interaction(guild, user, channel, custom_id, 3, data, message=message)

    async def _send_interaction(
        self,
        guild: FakeGuild,
        user: FakeUser,
        channel: FakeChannel,
        name: str,
        kind: int,
        data: dict[str, Any],
        message: FakeMessage | None = None,
    ) -> FakeInteraction:
        interaction = FakeInteraction(
            id=snowflake(),
            token=f"token-{snowflake()}",
            name=name,
            user=user,
            channel_id=channel.id,
            created=time.monotonic(),
            kind=kind,
            message=message,
        )
        self.interactions[interaction.id] = interaction
        payload: dict[str, Any] = {
            "id": str(interaction.id),
            "application_id": str(self.application_id),
            "type": kind,
            "token": interaction.token,
            "version": 1,
            "guild_id": str(guild.id),
            "channel_id": str(channel.id),
            "channel": channel.payload(),
            "member": guild.member_payload(user, with_permissions=True),
            "data": data,
            "app_permissions": str(guild.permissions(self.bot)),
            "locale": "en-US",
            "guild_locale": "en-US",
            "entitlements": [],
            "authorizing_integration_owners": {"0": str(guild.id)},
            "context": 0,
            "attachment_size_limit": 10 * 1024 * 1024,
        }
        if message is not None:
            payload["message"] = message.payload(self.bot, guild.id)
        await self.dispatch("INTERACTION_CREATE", payload)
        return interaction

    def _option_value(self, kind: int, value: Any, resolved: dict[str, Any]) -> Any:
        if kind == ROLE and isinstance(value, FakeRole):
            resolved.setdefault("roles", {})[str(value.id)] = value.payload()
            return str(value.id)
        if kind == CHANNEL and isinstance(value, FakeChannel):
            data = {k: v for k, v in value.payload().items() if k != "guild_id"}
            resolved.setdefault("channels", {})[str(value.id)] = {**data, "permissions": "0"}
            return str(value.id)
        if kind == ATTACHMENT and isinstance(value, FakeAttachment):
            url = f"{self.base_url}/attachments/{value.id}-{value.filename}"
            resolved.setdefault("attachments", {})[str(value.id)] = {
                "id": str(value.id),
                "filename": value.filename,
                "size": len(value.data) if value.size is None else value.size,
                "url": url,
                "proxy_url": url,
                "content_type": value.content_type,
            }
            return str(value.id)
        return value  # raw, as a client sends it: no Range or choice check here

    async def answer(self, interaction: FakeInteraction, timeout: float = 30.0) -> FakeMessage:
        """Wait for the interaction's visible answer; return the latest message."""
        await self.wait_for(lambda: interaction.messages, timeout)
        return interaction.messages[-1]

    def _interaction(self, request: web.Request) -> FakeInteraction | None:
        token = request.match_info["token"]
        return next((i for i in self.interactions.values() if i.token == token), None)

    async def _callback(self, request: web.Request) -> web.Response:
        interaction = self.interactions.get(int(request.match_info["id"]))
        if interaction is None or interaction.token != request.match_info["token"]:
            return _error(404, "Unknown interaction", 10062)
        delay = time.monotonic() - interaction.created
        if delay > INTERACTION_TIMEOUT:
            interaction.late_callbacks += 1
            self._notify()
            return _error(404, "Unknown interaction", 10062)
        if interaction.callbacks:
            return _error(400, "Interaction has already been acknowledged.", 40060)
        body = await request.json()
        interaction.callbacks.append(body)
        interaction.callback_delays.append(delay)
        kind, data = body["type"], body.get("data") or {}
        resource: dict[str, Any] = {"type": kind}
        if kind == 8:
            interaction.choices = data.get("choices", [])
        elif kind == 7 and interaction.message is not None:  # update the pressed message
            interaction.message.update(data)
            interaction.message.edits += 1
            resource["message"] = interaction.message.payload(self.bot, None)
        elif kind in (4, 5):
            message = FakeMessage(snowflake(), interaction.channel_id, flags=data.get("flags", 0))
            interaction.original = message
            if kind == 4:
                message.update(data)
                interaction.original_state = "sent"
            else:
                interaction.original_state = "loading"
            resource["message"] = message.payload(self.bot, None)
        self._notify()
        original = interaction.original
        return _response(
            {
                "interaction": {
                    "id": str(interaction.id),
                    "type": interaction.kind,
                    "response_message_id": str(original.id) if original else None,
                    "response_message_loading": interaction.original_state == "loading",
                    "response_message_ephemeral": bool(original and original.ephemeral),
                },
                "resource": resource,
            }
        )

    async def _followup(self, request: web.Request) -> web.Response:
        interaction = self._interaction(request)
        if interaction is None or not interaction.callbacks:
            return _error(404, "Unknown Webhook", 10015)
        body = await request.json()
        if interaction.original is not None and interaction.original_state == "loading":
            message = interaction.original  # keeps the deferral's flags, as Discord does
            interaction.original_state = "sent"
        else:
            message = FakeMessage(snowflake(), interaction.channel_id, flags=body.get("flags", 0))
            interaction.followups.append(message)
        message.update(body)
        self._notify()
        return _response(message.payload(self.bot, None))

    def _webhook_target(self, request: web.Request) -> tuple[FakeInteraction, FakeMessage] | None:
        """The interaction and the message (`@original` or an id) a webhook route names."""
        interaction = self._interaction(request)
        if interaction is None:
            return None
        wanted = request.match_info["message"]
        if wanted == "@original":
            found = interaction.original if interaction.original_state in ("loading", "sent") else None
        else:
            candidates = [interaction.original, *interaction.followups]
            found = next((m for m in candidates if m is not None and str(m.id) == wanted), None)
        return None if found is None else (interaction, found)

    async def _get_webhook(self, request: web.Request) -> web.Response:
        target = self._webhook_target(request)
        if target is None:
            return _error(404, "Unknown Message", 10008)
        return _response(target[1].payload(self.bot, None))

    async def _edit_webhook(self, request: web.Request) -> web.Response:
        target = self._webhook_target(request)
        if target is None:
            return _error(404, "Unknown Message", 10008)
        interaction, message = target
        message.edit(*await _read_body(request))
        if message is interaction.original:
            interaction.original_state = "sent"
        self._notify()
        return _response(message.payload(self.bot, None))

    async def _delete_webhook(self, request: web.Request) -> web.Response:
        target = self._webhook_target(request)
        if target is None:
            return _error(404, "Unknown Message", 10008)
        interaction, message = target
        if message is interaction.original:
            interaction.original_state = "deleted"
        else:
            interaction.followups.remove(message)
        self._notify()
        return web.Response(status=204)

    # --- REST: channel messages -----------------------------------------------
    def _channel(self, request: web.Request) -> tuple[FakeGuild, FakeChannel] | None:
        channel_id = int(request.match_info["channel"])
        for guild in self.guilds.values():
            if channel_id in guild.channels:
                return guild, guild.channels[channel_id]
        return None

    async def _post_message(self, request: web.Request) -> web.Response:
        body, files = await _read_body(request)
        channel_id = int(request.match_info["channel"])
        if channel_id in self.dm_channels:
            return self._direct_message(self.dm_channels[channel_id], channel_id, body, files)
        found = self._channel(request)
        if found is None:
            return _error(404, "Unknown Channel", 10003)
        guild, channel = found
        message = FakeMessage(snowflake(), channel.id, flags=body.get("flags", 0), files=files)
        message.update(body)
        self.channel_messages.setdefault(channel.id, []).append(message)
        self._notify()
        return _response(message.payload(self.bot, guild.id))

    # --- REST: direct messages ------------------------------------------------
    async def _open_dm(self, request: web.Request) -> web.Response:
        recipient = int((await request.json())["recipient_id"])
        user = next((m.user for g in self.guilds.values() for m in g.members.values() if m.user.id == recipient), None)
        if user is None:
            return _error(404, "Unknown User", 10013)
        channel_id = next((cid for cid, u in self.dm_channels.items() if u is user), snowflake())
        self.dm_channels[channel_id] = user
        return _response(
            {
                "id": str(channel_id),
                "type": 1,
                "last_message_id": None,
                "recipients": [user.payload()],
            }
        )

    def _direct_message(
        self, user: FakeUser, channel_id: int, body: dict[str, Any], files: list[FakeFile]
    ) -> web.Response:
        if not user.dms_open:
            self.refused_dms.append(user.id)
            self._notify()
            return _error(403, "Cannot send messages to this user", 50007)
        message = FakeMessage(snowflake(), channel_id, flags=body.get("flags", 0), files=files)
        message.update(body)
        self.direct_messages.setdefault(user.id, []).append(message)
        self._notify()
        return _response(message.payload(self.bot, None))

    def _find_message(self, request: web.Request) -> tuple[FakeGuild, FakeMessage] | None:
        found = self._channel(request)
        if found is None:
            return None
        guild, channel = found
        wanted = int(request.match_info["message"])
        for message in self.channel_messages.get(channel.id, []):
            if message.id == wanted:
                return guild, message
        return None

    async def _get_message(self, request: web.Request) -> web.Response:
        found = self._find_message(request)
        if found is None:
            return _error(404, "Unknown Message", 10008)
        guild, message = found
        return _response(message.payload(self.bot, guild.id))

    async def _edit_message(self, request: web.Request) -> web.Response:
        found = self._find_message(request)
        if found is None:
            return _error(404, "Unknown Message", 10008)
        guild, message = found
        message.edit(*await _read_body(request))
        self._notify()
        return _response(message.payload(self.bot, guild.id))

    async def _delete_message(self, request: web.Request) -> web.Response:
        found = self._find_message(request)
        if found is None:
            return _error(404, "Unknown Message", 10008)
        _, message = found
        self.channel_messages[message.channel_id].remove(message)
        self.deleted_messages.append(message)
        self._notify()
        return web.Response(status=204)

    async def _attachment(self, request: web.Request) -> web.Response:
        attachment = self.attachments.get(request.match_info["name"])
        if attachment is None:
            return web.Response(status=404)
        return web.Response(body=attachment.data, content_type=attachment.content_type or "application/octet-stream")


async def _read_body(request: web.Request) -> tuple[dict[str, Any], list[FakeFile]]:
    """A message body as discord.py sends it: JSON, or multipart with `payload_json` and
    `files[n]` parts when files are attached."""
    if not request.content_type.startswith("multipart/"):
        return await request.json(), []
    body: dict[str, Any] = {}
    files: list[FakeFile] = []
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        assert isinstance(part, BodyPartReader), "nested multipart is not expected"
        if part.name == "payload_json":
            body = json.loads(await part.text())
        elif part.name and part.name.startswith("files["):
            files.append(FakeFile(part.filename or "", bytes(await part.read()), part.headers.get("Content-Type")))
    return body, files

"""Namespace topics: creation with the log's configs and their inspection."""

from __future__ import annotations

import logging
from typing import Final

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError

from consumers.settings import Settings

logger = logging.getLogger(__name__)

# The broker stamps every record, so _hevlayer_upserted_at and the
# watermark come from one clock; compaction keeps the latest version per id.
TOPIC_CONFIGS: Final = {
    "message.timestamp.type": "LogAppendTime",
    "cleanup.policy": "compact",
}
_TOPIC_ALREADY_EXISTS: Final = TopicAlreadyExistsError.errno


class CreateTimeTopic(RuntimeError):
    """A topic stamps records with producer clocks and the operator did not opt in."""


def admin_client(settings: Settings) -> AIOKafkaAdminClient:
    """Build an admin client for the configured brokers (not started)."""
    return AIOKafkaAdminClient(
        bootstrap_servers=settings.bootstrap_servers,
        client_id="hevlayer-admin",
        request_timeout_ms=10_000,
    )


async def ensure_topic(
    admin: AIOKafkaAdminClient, settings: Settings, namespace: str
) -> bool:
    """Create a namespace's topic unless it exists; return whether it was created."""
    topic = settings.topic_for(namespace)
    response = await admin.create_topics(
        [
            NewTopic(
                topic,
                num_partitions=settings.partitions,
                replication_factor=settings.replication_factor,
                topic_configs=TOPIC_CONFIGS,
            )
        ]
    )
    for _name, error_code, error_message in response.topic_errors:
        if error_code == _TOPIC_ALREADY_EXISTS:
            return False
        if error_code != 0:
            raise RuntimeError(f"creating topic {topic!r} failed: {error_message}")
    logger.info(
        "created topic %s with %d partitions and %s",
        topic,
        settings.partitions,
        TOPIC_CONFIGS,
    )
    return True


async def timestamp_type(admin: AIOKafkaAdminClient, topic: str) -> str:
    """Return a topic's message.timestamp.type (CreateTime or LogAppendTime)."""
    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, topic)]
    )
    for resource in responses[0].resources:
        error_code, error_message = resource[0], resource[1]
        if error_code != 0:
            raise RuntimeError(f"describing topic {topic!r} failed: {error_message}")
        for entry in resource[4]:
            if entry[0] == "message.timestamp.type":
                return str(entry[1])
    return "CreateTime"


async def check_timestamp_type(
    admin: AIOKafkaAdminClient, settings: Settings, topic: str
) -> None:
    """Raise CreateTimeTopic when a topic uses CreateTime without the opt-in."""
    kind = await timestamp_type(admin, topic)
    if kind == "LogAppendTime":
        return
    if settings.allow_create_time:
        logger.warning(
            "topic %s uses %s: _hevlayer_upserted_at comes from producer clocks "
            "(allowed by --allow-create-time)",
            topic,
            kind,
        )
        return
    raise CreateTimeTopic(
        f"topic {topic!r} uses message.timestamp.type={kind}, so producer clocks "
        "would stamp _hevlayer_upserted_at; set it to LogAppendTime or start "
        "hevlayer with --allow-create-time"
    )


async def namespace_partitions(
    admin: AIOKafkaAdminClient, settings: Settings, only: str | None = None
) -> dict[str, list[int]]:
    """Return topic -> sorted partitions for every namespace topic on the broker."""
    topics = [
        topic
        for topic in await admin.list_topics()
        if settings.namespace_of(topic) is not None
        and (only is None or settings.namespace_of(topic) == only)
    ]
    if not topics:
        return {}
    result: dict[str, list[int]] = {}
    for description in await admin.describe_topics(sorted(topics)):
        if description["error_code"] != 0:
            continue
        partitions = sorted(p["partition"] for p in description["partitions"])
        if partitions:
            result[description["topic"]] = partitions
    return result


async def ensure_dead_letter_topic(admin: AIOKafkaAdminClient, settings: Settings) -> None:
    """Create the dead-letter topic unless it exists (time retention, no compaction)."""
    topic = settings.dead_letter_topic
    response = await admin.create_topics(
        [NewTopic(topic, num_partitions=1, replication_factor=settings.replication_factor)]
    )
    for _name, error_code, error_message in response.topic_errors:
        if error_code not in (0, _TOPIC_ALREADY_EXISTS):
            raise RuntimeError(f"creating topic {topic!r} failed: {error_message}")
        if error_code == 0:
            logger.info("created dead-letter topic %s", topic)

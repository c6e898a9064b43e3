"""kafka-python against a running broker: create a topic with the admin client, produce
keyed messages with each acks level and gzip, read them back with a group-less consumer,
list offsets by time, alter and describe a topic config, delete the topic.

Usage: python kafka_python_roundtrip.py HOST:PORT
Exits 0 when every check holds; prints what differed otherwise.
"""

import sys
import time
import uuid

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient, NewTopic


def main(bootstrap: str) -> None:
    topic = f"py-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10000)
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1,
                                  topic_configs={"retention.ms": "3600000"})])
    assert topic in admin.list_topics(), "created topic is listed"

    sent = []  # (partition, offset, key, value)
    base_ts = int(time.time() * 1000) - 60_000
    for acks in (0, 1, "all"):
        # Idempotence (kafka-python's default) needs acks=all; the other acks run without it.
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks=acks,
                                 compression_type="gzip", enable_idempotence=(acks == "all"),
                                 request_timeout_ms=10000)
        futures = []
        for i in range(50):
            key = f"k{i % 7}".encode()
            value = f"{acks}-{i}".encode()
            ts = base_ts + len(sent) + len(futures)
            futures.append((key, value, producer.send(topic, key=key, value=value, timestamp_ms=ts)))
        producer.flush(timeout=10)
        for key, value, fut in futures:
            md = fut.get(timeout=10)
            sent.append((md.partition, md.offset, key, value))
        producer.close()

    tps = [TopicPartition(topic, p) for p in range(2)]
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                             enable_auto_commit=False, consumer_timeout_ms=5000)
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    ends = consumer.end_offsets(tps)
    assert sum(ends.values()) == len(sent), f"end offsets {ends} vs {len(sent)} sent"
    got = {}
    deadline = time.time() + 20
    while sum(len(v) for v in got.values()) < len(sent) and time.time() < deadline:
        for tp, records in consumer.poll(timeout_ms=1000).items():
            got.setdefault(tp.partition, []).extend((r.offset, r.key, r.value) for r in records)
    for p in range(2):
        offsets = [o for o, _, _ in got.get(p, [])]
        assert offsets == list(range(len(offsets))), f"partition {p} offsets not contiguous: {offsets[:10]}"
    produced = sorted((k, v) for _, _, k, v in sent)
    consumed = sorted((k, v) for recs in got.values() for _, k, v in recs)
    assert produced == consumed, "consumed set differs from produced set"
    # Keyed order: within a partition, acks=1 and acks=all messages appear in send order.
    for p, recs in got.items():
        values = [v for _, _, v in recs if not v.startswith(b"0-")]
        expected = [v for (pp, _, _, v) in sent if pp == p and not v.startswith(b"0-")]
        assert values == expected, f"partition {p} order differs"

    # Offsets by timestamp: the first message at or after the middle timestamp.
    mid_ts = base_ts + len(sent) // 2
    found = consumer.offsets_for_times({tp: mid_ts for tp in tps})
    for tp, ot in found.items():
        if ot is not None:
            assert ot.timestamp >= mid_ts, f"{tp}: timestamp {ot.timestamp} < {mid_ts}"
    assert any(ot is not None for ot in found.values()), "no offset found for the middle timestamp"
    consumer.close()

    res = ConfigResource(ConfigResourceType.TOPIC, topic, configs={"retention.ms": "7200000"})
    admin.alter_configs([res])
    described = admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    text = repr(described)
    assert "7200000" in text, f"altered retention.ms not described: {text[:500]}"

    admin.delete_topics([topic])
    deadline = time.time() + 10
    while topic in admin.list_topics() and time.time() < deadline:
        time.sleep(0.1)
    assert topic not in admin.list_topics(), "deleted topic still listed"
    admin.close()
    print(f"kafka-python roundtrip ok: {len(sent)} messages on {topic}")


if __name__ == "__main__":
    main(sys.argv[1])

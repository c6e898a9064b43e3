//! Topic management through the Kafka admin API (`CreateTopics`, `DeleteTopics`) and
//! metadata look-ups, using librdkafka's `AdminClient`, so it works against any
//! Kafka-compatible broker.

use std::time::Duration;

use anyhow::{bail, Context};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

/// How long an admin request or metadata look-up may take before the broker is
/// declared unreachable.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

fn admin_client(bootstrap: &str) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "tributary-bench-admin")
        .create()
        .context("creating the admin client")
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .context("building the admin runtime")
}

/// Creates `topic` with `partitions` partitions and replication factor 1; an existing
/// topic is left as it is (and reported on stderr).
pub fn create_topic(bootstrap: &str, topic: &str, partitions: i32) -> anyhow::Result<()> {
    create_topic_with(bootstrap, topic, partitions, 1, &[])
}

/// Creates `topic` with `partitions` partitions, `replication_factor` replicas each and
/// the topic configs `configs` (e.g. `min.insync.replicas=2`); an existing topic is left
/// as it is (and reported on stderr).
pub fn create_topic_with(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    replication_factor: i32,
    configs: &[(&str, &str)],
) -> anyhow::Result<()> {
    let admin = admin_client(bootstrap)?;
    let options = AdminOptions::new()
        .operation_timeout(Some(REQUEST_TIMEOUT))
        .request_timeout(Some(REQUEST_TIMEOUT));
    let mut new_topic = NewTopic::new(
        topic,
        partitions,
        TopicReplication::Fixed(replication_factor),
    );
    for (key, value) in configs {
        new_topic = new_topic.set(key, value);
    }
    let results = runtime()?
        .block_on(admin.create_topics([&new_topic], &options))
        .with_context(|| format!("CreateTopics {topic} via {bootstrap}"))?;
    for result in results {
        match result {
            Ok(_) => {}
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                eprintln!("note: topic {name} already exists; using it as it is");
            }
            Err((name, code)) => bail!("CreateTopics {name} failed: {code}"),
        }
    }
    Ok(())
}

/// Creates `topic` with one partition per entry of `assignment`, each on the listed
/// brokers (the first one is the preferred leader), with the topic configs `configs`.
pub fn create_topic_assigned(
    bootstrap: &str,
    topic: &str,
    assignment: &[Vec<i32>],
    configs: &[(&str, &str)],
) -> anyhow::Result<()> {
    let admin = admin_client(bootstrap)?;
    let options = AdminOptions::new()
        .operation_timeout(Some(REQUEST_TIMEOUT))
        .request_timeout(Some(REQUEST_TIMEOUT));
    let replicas: Vec<&[i32]> = assignment.iter().map(Vec::as_slice).collect();
    let partitions = i32::try_from(replicas.len()).context("too many partitions")?;
    let mut new_topic = NewTopic::new(topic, partitions, TopicReplication::Variable(&replicas));
    for (key, value) in configs {
        new_topic = new_topic.set(key, value);
    }
    let results = runtime()?
        .block_on(admin.create_topics([&new_topic], &options))
        .with_context(|| format!("CreateTopics {topic} via {bootstrap}"))?;
    for result in results {
        if let Err((name, code)) = result {
            bail!("CreateTopics {name} (replicas {assignment:?}) failed: {code}");
        }
    }
    Ok(())
}

/// Deletes `topics`; used by `suite` to give the disk space back.
pub fn delete_topics(bootstrap: &str, topics: &[&str]) -> anyhow::Result<()> {
    let admin = admin_client(bootstrap)?;
    let options = AdminOptions::new()
        .operation_timeout(Some(REQUEST_TIMEOUT))
        .request_timeout(Some(REQUEST_TIMEOUT));
    let results = runtime()?
        .block_on(admin.delete_topics(topics, &options))
        .context("DeleteTopics")?;
    for result in results {
        if let Err((name, code)) = result {
            bail!("DeleteTopics {name} failed: {code}");
        }
    }
    Ok(())
}

/// Number of partitions of `topic`, from a metadata request; also the first check
/// that the broker answers at all. With `allow_auto_create` the request asks the
/// broker to create a missing topic, as a producer's own metadata request would.
pub fn partition_count(
    bootstrap: &str,
    topic: &str,
    allow_auto_create: bool,
) -> anyhow::Result<i32> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("client.id", "tributary-bench-metadata")
        .set("allow.auto.create.topics", allow_auto_create.to_string())
        .create()
        .context("creating the metadata client")?;
    let metadata = client
        .fetch_metadata(Some(topic), REQUEST_TIMEOUT)
        .with_context(|| format!("cannot fetch metadata for {topic} from {bootstrap}"))?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        bail!("topic {topic} is not in the metadata from {bootstrap}");
    };
    if let Some(error) = found.error() {
        bail!(
            "metadata for {topic} has error {:?}",
            RDKafkaErrorCode::from(error)
        );
    }
    let partitions = found.partitions().len();
    if partitions == 0 {
        bail!("topic {topic} has no partitions");
    }
    i32::try_from(partitions).context("partition count does not fit in i32")
}

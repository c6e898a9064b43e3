//! `tributary groups ...`: list, describe and reset the offsets of consumer groups, in the
//! spirit of Kafka's `kafka-consumer-groups.sh`.
//!
//! | subcommand | requests |
//! |---|---|
//! | `list` | ListGroups |
//! | `describe GROUP` | DescribeGroups, OffsetFetch (all partitions), ListOffsets at -1 (log end) |
//! | `reset-offsets GROUP --topic T ...` | DescribeGroups, Metadata, ListOffsets, then OffsetCommit with `--execute` |
//!
//! A reset commits as a non-member (generation -1, empty member id), which the broker accepts
//! only while the group is `Empty`; the CLI checks the state first so that the error names
//! it. Without `--execute` a reset only prints its plan, as Kafka's tool does.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use kafka_protocol::messages::describe_groups_request::DescribeGroupsRequest;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::find_coordinator_request::FindCoordinatorRequest;
use kafka_protocol::messages::list_groups_request::ListGroupsRequest;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequest, OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequest;
use kafka_protocol::messages::{ApiKey, GroupId};

use super::client::AdminClient;
use super::topics::{
    list_offsets, metadata, str_bytes, table, topic_name, EARLIEST_TIMESTAMP, LATEST_TIMESTAMP,
};
use super::{check, Error, Result};

/// `tributary groups`: arguments shared by every subcommand, then the subcommand.
#[derive(Debug, clap::Args)]
pub struct GroupsArgs {
    #[command(flatten)]
    pub bootstrap: super::BootstrapArgs,
    #[command(subcommand)]
    pub command: GroupsCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum GroupsCommand {
    /// List group ids.
    List,
    /// Show a group's state, members with their assignments, and per partition the committed
    /// offset, log end offset and lag.
    Describe { group: String },
    /// Move a group's committed offsets; the group must have no members.
    ResetOffsets(ResetArgs),
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).multiple(false)))]
pub struct ResetArgs {
    pub group: String,
    /// Topic whose partitions are reset (all of its partitions). Repeatable.
    #[arg(long = "topic", required = true)]
    pub topics: Vec<String>,
    /// Reset to the log start offset.
    #[arg(long, group = "target")]
    pub to_earliest: bool,
    /// Reset to the log end offset.
    #[arg(long, group = "target")]
    pub to_latest: bool,
    /// Reset to the first offset whose timestamp is at or after this RFC 3339 time
    /// (e.g. 2024-05-01T12:00:00Z); the log end offset when there is none.
    #[arg(long, group = "target", value_name = "RFC3339", value_parser = parse_rfc3339_ms)]
    pub to_datetime: Option<i64>,
    /// Reset to this offset, clamped to the log's start and end offsets.
    #[arg(long, group = "target", value_name = "N")]
    pub to_offset: Option<i64>,
    /// Print the plan without committing it (the default when --execute is absent).
    #[arg(long, conflicts_with = "execute")]
    pub dry_run: bool,
    /// Commit the new offsets.
    #[arg(long)]
    pub execute: bool,
}

/// Runs one `groups` subcommand, writing its output to `out` (and warnings to stderr).
pub fn run(args: GroupsArgs, out: &mut impl Write) -> Result<()> {
    let mut client = AdminClient::connect(&args.bootstrap.bootstrap_server)?;
    let lines = match args.command {
        GroupsCommand::List => list(&mut client)?,
        GroupsCommand::Describe { group } => {
            describe(&mut coordinator(&mut client, &group)?, &group)?
        }
        GroupsCommand::ResetOffsets(reset) => {
            reset_offsets(&mut coordinator(&mut client, &reset.group)?, &reset)?
        }
    };
    super::print_lines(out, lines);
    Ok(())
}

/// A connection to `group`'s coordinator (FindCoordinator through `client`): in a cluster
/// each group is served by the leader of its `__consumer_offsets` partition only.
fn coordinator(client: &mut AdminClient, group: &str) -> Result<AdminClient> {
    const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
    const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        // v4 batches keys in `coordinator_keys`; earlier versions have the single `key`.
        let request = if client.version(ApiKey::FindCoordinator)? >= 4 {
            FindCoordinatorRequest::default().with_coordinator_keys(vec![str_bytes(group)])
        } else {
            FindCoordinatorRequest::default().with_key(str_bytes(group))
        };
        let (response, version) = client.send(request)?;
        let (code, message, host, port) =
            if version >= 4 {
                let c = response.coordinators.into_iter().next().ok_or_else(|| {
                    Error::MissingResult {
                        resource: group.to_string(),
                    }
                })?;
                (c.error_code, c.error_message, c.host, c.port)
            } else {
                (
                    response.error_code,
                    response.error_message,
                    response.host,
                    response.port,
                )
            };
        let retriable = matches!(
            code,
            COORDINATOR_LOAD_IN_PROGRESS | COORDINATOR_NOT_AVAILABLE
        );
        if code == 0 {
            return AdminClient::connect(&format!("{}:{port}", host.as_str()));
        }
        if !retriable || std::time::Instant::now() > deadline {
            check(group, code, message.as_deref())?;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Every group of the cluster: ListGroups asked of each broker, since each lists only the
/// groups it coordinates.
fn list(client: &mut AdminClient) -> Result<Vec<String>> {
    let brokers: Vec<String> = metadata(client, None)?
        .brokers
        .iter()
        .map(|b| format!("{}:{}", b.host.as_str(), b.port))
        .collect();
    let mut ids = BTreeSet::new();
    for addr in brokers {
        let mut broker = AdminClient::connect(&addr)?;
        let (response, _) = broker.send(ListGroupsRequest::default())?;
        check("ListGroups", response.error_code, None)?;
        ids.extend(response.groups.iter().map(|g| g.group_id.0.to_string()));
    }
    Ok(ids.into_iter().collect())
}

fn describe_group(client: &mut AdminClient, group: &str) -> Result<DescribedGroup> {
    let request = DescribeGroupsRequest::default()
        .with_groups(vec![GroupId(str_bytes(group))])
        .with_include_authorized_operations(false);
    let (response, _) = client.send(request)?;
    let described = response
        .groups
        .into_iter()
        .find(|g| g.group_id.0.as_str() == group)
        .ok_or_else(|| Error::MissingResult {
            resource: group.to_string(),
        })?;
    check(group, described.error_code, None)?;
    Ok(described)
}

/// Committed offsets of every partition the group has one for: (topic, partition) → offset.
fn committed_offsets(
    client: &mut AdminClient,
    group: &str,
) -> Result<BTreeMap<(String, i32), i64>> {
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(str_bytes(group)))
        .with_topics(None);
    let (response, _) = client.send(request)?;
    check(group, response.error_code, None)?;
    let mut offsets = BTreeMap::new();
    for t in &response.topics {
        for p in &t.partitions {
            let resource = format!("{}-{}", t.name.0, p.partition_index);
            check(&resource, p.error_code, None)?;
            if p.committed_offset >= 0 {
                offsets.insert(
                    (t.name.0.to_string(), p.partition_index),
                    p.committed_offset,
                );
            }
        }
    }
    Ok(offsets)
}

fn describe(client: &mut AdminClient, group: &str) -> Result<Vec<String>> {
    let described = describe_group(client, group)?;
    let state = described.group_state.to_string();
    let committed = committed_offsets(client, group)?;
    if state == "Dead" && committed.is_empty() {
        // Kafka's tool prints the same sentence.
        return Err(Error::Command(format!(
            "Consumer group '{group}' does not exist."
        )));
    }
    let protocol = if described.protocol_data.is_empty() {
        "-".to_string()
    } else {
        described.protocol_data.to_string()
    };
    let mut lines = vec![
        format!(
            "Consumer group '{group}'  State: {state}  Protocol: {protocol}  Members: {}",
            described.members.len()
        ),
        String::new(),
    ];

    // (topic, partition) → (member id, client id) of the member it is assigned to.
    let mut owners: BTreeMap<(String, i32), (String, String)> = BTreeMap::new();
    let mut member_rows = Vec::new();
    for m in &described.members {
        let assignment = decode_assignment(&m.member_assignment).unwrap_or_default();
        for (topic, partitions) in &assignment {
            for &p in partitions {
                owners.insert(
                    (topic.clone(), p),
                    (m.member_id.to_string(), m.client_id.to_string()),
                );
            }
        }
        let assigned = if assignment.is_empty() {
            "-".to_string()
        } else {
            assignment
                .iter()
                .map(|(t, ps)| {
                    let ps: Vec<String> = ps.iter().map(i32::to_string).collect();
                    format!("{t}({})", ps.join(","))
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        member_rows.push(vec![
            m.member_id.to_string(),
            m.group_instance_id
                .as_ref()
                .map_or("-".to_string(), |s| s.to_string()),
            m.client_id.to_string(),
            m.client_host.to_string(),
            assigned,
        ]);
    }
    if !member_rows.is_empty() {
        lines.extend(table(
            &[
                "MEMBER-ID",
                "INSTANCE-ID",
                "CLIENT-ID",
                "HOST",
                "ASSIGNMENT",
            ],
            member_rows,
        ));
        lines.push(String::new());
    }

    let partitions: BTreeSet<(String, i32)> =
        committed.keys().chain(owners.keys()).cloned().collect();
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (t, p) in &partitions {
        by_topic.entry(t).or_default().push(*p);
    }
    let mut rows = Vec::new();
    for (topic, ps) in by_topic {
        let ends = list_offsets(client, topic, &ps, LATEST_TIMESTAMP)?;
        for (p, end) in ps.iter().zip(ends) {
            let key = (topic.to_string(), *p);
            let current = committed.get(&key).copied();
            let (member, client_id) = owners
                .get(&key)
                .cloned()
                .unwrap_or_else(|| ("-".to_string(), "-".to_string()));
            rows.push(vec![
                topic.to_string(),
                p.to_string(),
                current.map_or("-".to_string(), |c| c.to_string()),
                end.to_string(),
                current.map_or("-".to_string(), |c| (end - c).max(0).to_string()),
                member,
                client_id,
            ]);
        }
    }
    lines.extend(table(
        &[
            "TOPIC",
            "PARTITION",
            "CURRENT-OFFSET",
            "LOG-END-OFFSET",
            "LAG",
            "CONSUMER-ID",
            "CLIENT-ID",
        ],
        rows,
    ));
    Ok(lines)
}

fn reset_offsets(client: &mut AdminClient, args: &ResetArgs) -> Result<Vec<String>> {
    let group = args.group.as_str();
    let described = describe_group(client, group)?;
    let state = described.group_state.as_str();
    if state != "Empty" && state != "Dead" {
        return Err(Error::Command(format!(
            "Assignments can only be reset if the group '{group}' is inactive, but the current \
             state is {state} ({} members).",
            described.members.len()
        )));
    }

    // (topic, partition, new offset)
    let mut plan: Vec<(String, i32, i64)> = Vec::new();
    for topic in &args.topics {
        let response = metadata(client, Some(topic))?;
        let t = response
            .topics
            .into_iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == topic))
            .ok_or_else(|| Error::MissingResult {
                resource: topic.clone(),
            })?;
        check(topic, t.error_code, None)?;
        let mut ps: Vec<i32> = t.partitions.iter().map(|p| p.partition_index).collect();
        ps.sort_unstable();
        let starts = list_offsets(client, topic, &ps, EARLIEST_TIMESTAMP)?;
        let ends = list_offsets(client, topic, &ps, LATEST_TIMESTAMP)?;
        let at_time = match args.to_datetime {
            Some(ms) => Some(list_offsets(client, topic, &ps, ms)?),
            None => None,
        };
        for (i, &p) in ps.iter().enumerate() {
            let (start, end) = (starts[i], ends[i]);
            let offset = if args.to_earliest {
                start
            } else if args.to_latest {
                end
            } else if let Some(at) = &at_time {
                // -1: no record at or after the time, so the log end.
                if at[i] < 0 {
                    end
                } else {
                    at[i]
                }
            } else {
                // clap requires exactly one target, so this is --to-offset.
                args.to_offset.unwrap_or(start).clamp(start, end.max(start))
            };
            plan.push((topic.clone(), p, offset));
        }
    }

    if args.execute {
        commit(client, group, &plan)?;
    } else if !args.dry_run {
        eprintln!(
            "WARN: No action will be performed as the --execute option is missing. \
             Add --execute to reset the offsets, or --dry-run to silence this warning."
        );
    }
    let rows = plan
        .iter()
        .map(|(t, p, o)| vec![group.to_string(), t.clone(), p.to_string(), o.to_string()])
        .collect();
    let mut lines = table(&["GROUP", "TOPIC", "PARTITION", "NEW-OFFSET"], rows);
    if args.execute {
        lines.push(String::new());
        lines.push(format!(
            "Committed {} offsets of group '{group}'.",
            plan.len()
        ));
    } else {
        lines.push(String::new());
        lines.push("Dry run: nothing was committed.".to_string());
    }
    Ok(lines)
}

/// Commits `plan` as a non-member: generation -1 and an empty member id.
fn commit(client: &mut AdminClient, group: &str, plan: &[(String, i32, i64)]) -> Result<()> {
    let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
    for (t, p, o) in plan {
        topics.entry(t).or_default().push(
            OffsetCommitRequestPartition::default()
                .with_partition_index(*p)
                .with_committed_offset(*o)
                .with_committed_leader_epoch(-1)
                .with_committed_metadata(Some(str_bytes(""))),
        );
    }
    let request = OffsetCommitRequest::default()
        .with_group_id(GroupId(str_bytes(group)))
        .with_generation_id_or_member_epoch(-1)
        .with_member_id(str_bytes(""))
        .with_group_instance_id(None)
        .with_topics(
            topics
                .into_iter()
                .map(|(t, ps)| {
                    OffsetCommitRequestTopic::default()
                        .with_name(topic_name(t))
                        .with_partitions(ps)
                })
                .collect(),
        );
    let (response, _) = client.send(request)?;
    for t in &response.topics {
        for p in &t.partitions {
            check(
                &format!("{group} {}-{}", t.name.0, p.partition_index),
                p.error_code,
                None,
            )?;
        }
    }
    Ok(())
}

/// Decodes a consumer protocol assignment (`ConsumerProtocolAssignment`): version i16, an
/// array of (topic string, array of i32 partitions), then user data bytes (ignored).
/// `None` for bytes that do not parse; empty bytes are an empty assignment.
pub fn decode_assignment(bytes: &[u8]) -> Option<Vec<(String, Vec<i32>)>> {
    if bytes.is_empty() {
        return Some(Vec::new());
    }
    let mut r = Reader(bytes);
    let _version = r.i16()?;
    let topics = r.i32()?;
    let mut out = Vec::new();
    for _ in 0..topics.max(0) {
        let len = r.i16()?;
        let name = String::from_utf8(r.take(usize::try_from(len).ok()?)?.to_vec()).ok()?;
        let n = r.i32()?;
        let mut partitions = Vec::new();
        for _ in 0..n.max(0) {
            partitions.push(r.i32()?);
        }
        partitions.sort_unstable();
        out.push((name, partitions));
    }
    out.sort();
    Some(out)
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Option<&[u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }
    fn i16(&mut self) -> Option<i16> {
        Some(i16::from_be_bytes(self.take(2)?.try_into().ok()?))
    }
    fn i32(&mut self) -> Option<i32> {
        Some(i32::from_be_bytes(self.take(4)?.try_into().ok()?))
    }
}

/// Milliseconds since the Unix epoch of an RFC 3339 time: `YYYY-MM-DDTHH:MM:SS[.fff]` then
/// `Z` or `±HH:MM`.
pub fn parse_rfc3339_ms(s: &str) -> Result<i64, String> {
    let bad = || format!("expected an RFC 3339 time like 2024-05-01T12:00:00Z, got {s:?}");
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return Err(bad());
    }
    if b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let num = |range: std::ops::Range<usize>| -> Result<i64, String> {
        let part = s.get(range).ok_or_else(bad)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return Err(bad());
        }
        part.parse::<i64>().map_err(|_| bad())
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return Err(bad());
    }
    if second > 60 {
        return Err(bad());
    }
    let mut rest = &s[19..];
    let mut millis = 0i64;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(bad());
        }
        let padded = format!("{:0<3}", &frac[..digits.min(3)]);
        millis = padded.parse().map_err(|_| bad())?;
        rest = &frac[digits..];
    }
    let offset_minutes = match rest {
        "Z" | "z" => 0,
        _ if rest.len() == 6 && rest.as_bytes()[3] == b':' => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return Err(bad()),
            };
            let h: i64 = rest[1..3].parse().map_err(|_| bad())?;
            let m: i64 = rest[4..6].parse().map_err(|_| bad())?;
            sign * (h * 60 + m)
        }
        _ => return Err(bad()),
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3_600 + minute * 60 + second - offset_minutes * 60;
    Ok(seconds * 1_000 + millis)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_parses_to_epoch_millis() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Ok(0));
        assert_eq!(
            parse_rfc3339_ms("2024-05-01T12:00:00.5Z"),
            Ok(1_714_564_800_500)
        );
        assert_eq!(
            parse_rfc3339_ms("2024-05-01T14:00:00+02:00"),
            Ok(1_714_564_800_000)
        );
        assert!(parse_rfc3339_ms("2024-05-01").is_err());
        assert!(parse_rfc3339_ms("2024-13-01T00:00:00Z").is_err());
        assert!(parse_rfc3339_ms("2024-05-01T00:00:00").is_err());
    }

    #[test]
    fn consumer_assignment_decodes() {
        let mut b = Vec::new();
        b.extend_from_slice(&1i16.to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(&3i16.to_be_bytes());
        b.extend_from_slice(b"ord");
        b.extend_from_slice(&2i32.to_be_bytes());
        b.extend_from_slice(&5i32.to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(&(-1i32).to_be_bytes()); // null user data
        assert_eq!(
            decode_assignment(&b),
            Some(vec![("ord".to_string(), vec![1, 5])])
        );
        assert_eq!(decode_assignment(&[]), Some(vec![]));
        assert_eq!(decode_assignment(&b[..7]), None);
    }
}

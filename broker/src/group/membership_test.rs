//! Unit tests for [`super::Group`]: every test feeds requests and explicit times in and
//! asserts on the responses and effects that come out.

use super::*;

const SESSION_TIMEOUT_MS: i32 = 10_000;
const REBALANCE_TIMEOUT_MS: i32 = 30_000;
const INITIAL_DELAY_MS: i64 = 3_000;
/// When the helpers' groups are stable: members that all join at time 0 extend the initial
/// delay once, and everyone syncs at the end of the extension.
const STABLE_AT_MS: i64 = 2 * INITIAL_DELAY_MS;

fn config() -> GroupConfig {
    GroupConfig {
        group_initial_rebalance_delay_ms: INITIAL_DELAY_MS as i32,
        ..GroupConfig::default()
    }
}

fn protocols(list: &[(&str, &str)]) -> Vec<Protocol> {
    list.iter()
        .map(|(name, metadata)| Protocol {
            name: (*name).to_owned(),
            metadata: Bytes::from(metadata.to_string()),
        })
        .collect()
}

fn join_request(member_id: &str, client_id: &str) -> JoinRequest {
    JoinRequest {
        member_id: member_id.to_owned(),
        group_instance_id: None,
        client_id: client_id.to_owned(),
        client_host: "/127.0.0.1".to_owned(),
        protocol_type: "consumer".to_owned(),
        protocols: protocols(&[("range", client_id)]),
        session_timeout_ms: SESSION_TIMEOUT_MS,
        rebalance_timeout_ms: REBALANCE_TIMEOUT_MS,
        require_known_member_id: true,
    }
}

fn sync_request(member_id: &str, generation_id: i32) -> SyncRequest {
    SyncRequest {
        member_id: member_id.to_owned(),
        group_instance_id: None,
        generation_id,
        protocol_type: Some("consumer".to_owned()),
        protocol_name: None,
        assignments: Vec::new(),
    }
}

fn assignment_of(member_id: &str) -> Bytes {
    Bytes::from(format!("assignment-of-{member_id}"))
}

fn join_responses(effects: &[Effect]) -> BTreeMap<String, JoinResponse> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::JoinResponse {
                member_id,
                response,
            } => Some((member_id.clone(), response.clone())),
            Effect::SyncResponse { .. } => None,
        })
        .collect()
}

fn sync_responses(effects: &[Effect]) -> BTreeMap<String, SyncResponse> {
    effects
        .iter()
        .filter_map(|effect| match effect {
            Effect::SyncResponse {
                member_id,
                response,
            } => Some((member_id.clone(), response.clone())),
            Effect::JoinResponse { .. } => None,
        })
        .collect()
}

fn responded(outcome: JoinOutcome) -> JoinResponse {
    match outcome {
        JoinOutcome::Respond(response) => response,
        JoinOutcome::Pending => panic!("expected an immediate JoinGroup response"),
    }
}

fn sync_responded(outcome: SyncOutcome) -> SyncResponse {
    match outcome {
        SyncOutcome::Respond(response) => response,
        SyncOutcome::Pending => panic!("expected an immediate SyncGroup response"),
    }
}

/// A group plus a deterministic member-id generator (`{client_id}-1`, `{client_id}-2`, ...).
struct Harness {
    group: Group,
    next_suffix: u32,
}

impl Harness {
    fn new(config: GroupConfig) -> Self {
        Self {
            group: Group::new("group-a", config),
            next_suffix: 0,
        }
    }

    fn join(&mut self, request: JoinRequest, now_ms: i64) -> (JoinOutcome, Vec<Effect>) {
        let next_suffix = &mut self.next_suffix;
        self.group.join(request, now_ms, &mut || {
            *next_suffix += 1;
            next_suffix.to_string()
        })
    }

    /// The KIP-394 handshake: MEMBER_ID_REQUIRED, then a join with the handed-out id, which
    /// is parked. Returns the member id.
    fn join_new_member(&mut self, client_id: &str, now_ms: i64) -> String {
        let (outcome, effects) = self.join(join_request("", client_id), now_ms);
        let response = responded(outcome);
        assert_eq!(response.error_code, MEMBER_ID_REQUIRED);
        assert!(effects.is_empty());
        let member_id = response.member_id;
        let (outcome, _) = self.join(join_request(&member_id, client_id), now_ms);
        assert_eq!(outcome, JoinOutcome::Pending);
        member_id
    }

    /// Lets the pending join phase run to its end; returns its effects and the time it ended.
    fn finish_join_phase(&mut self) -> (Vec<Effect>, i64) {
        let mut effects = Vec::new();
        let mut now_ms = 0;
        while self.group.state() == GroupState::PreparingRebalance {
            now_ms = self.group.next_deadline_ms().expect("a pending join phase");
            effects.extend(self.group.tick(now_ms));
        }
        (effects, now_ms)
    }

    /// The leader syncs with one assignment per member; returns the SyncGroup effects.
    fn leader_sync(&mut self, leader: &str, generation_id: i32, now_ms: i64) -> Vec<Effect> {
        let assignments = self
            .group
            .members()
            .map(|member| (member.member_id.clone(), assignment_of(&member.member_id)))
            .collect();
        let request = SyncRequest {
            assignments,
            ..sync_request(leader, generation_id)
        };
        let (outcome, effects) = self.group.sync(request, now_ms);
        assert_eq!(outcome, SyncOutcome::Pending);
        effects
    }

    /// A stable group of the given dynamic clients at generation 1, formed at time 0;
    /// returns the member ids, leader first.
    fn stable_group(clients: &[&str]) -> (Self, Vec<String>) {
        let mut harness = Self::new(config());
        let mut member_ids: Vec<String> = clients
            .iter()
            .map(|client| harness.join_new_member(client, 0))
            .collect();
        let (effects, _) = harness.finish_join_phase();
        assert_eq!(join_responses(&effects).len(), clients.len());
        let leader = harness.group.leader_id().expect("a leader").to_owned();
        member_ids.sort_by_key(|id| *id != leader);
        for follower in &member_ids[1..] {
            let (outcome, _) = harness.group.sync(sync_request(follower, 1), STABLE_AT_MS);
            assert_eq!(outcome, SyncOutcome::Pending);
        }
        let synced = sync_responses(&harness.leader_sync(&leader, 1, STABLE_AT_MS));
        assert_eq!(synced.len(), clients.len());
        assert_eq!(harness.group.state(), GroupState::Stable);
        (harness, member_ids)
    }
}

#[test]
fn first_member_gets_member_id_required_then_leads_generation_one_after_initial_delay() {
    let mut h = Harness::new(config());
    let (outcome, effects) = h.join(join_request("", "client"), 0);
    let response = responded(outcome);
    assert_eq!(response.error_code, MEMBER_ID_REQUIRED);
    assert_eq!(response.member_id, "client-1");
    assert!(effects.is_empty());
    assert!(h.group.is_pending_member("client-1"));
    assert_eq!(h.group.state(), GroupState::Empty);

    let (outcome, effects) = h.join(join_request("client-1", "client"), 100);
    assert_eq!(outcome, JoinOutcome::Pending);
    assert!(effects.is_empty());
    assert_eq!(h.group.state(), GroupState::PreparingRebalance);
    assert_eq!(h.group.next_deadline_ms(), Some(100 + INITIAL_DELAY_MS));

    // The initial delay never completes early, even though everyone has joined.
    assert!(h.group.tick(100 + INITIAL_DELAY_MS - 1).is_empty());
    let joined = join_responses(&h.group.tick(100 + INITIAL_DELAY_MS));
    let response = &joined["client-1"];
    assert_eq!(response.error_code, NONE);
    assert_eq!(response.generation_id, 1);
    assert_eq!(response.leader, "client-1");
    assert_eq!(response.protocol_type.as_deref(), Some("consumer"));
    assert_eq!(response.protocol_name.as_deref(), Some("range"));
    assert_eq!(response.members.len(), 1);
    assert_eq!(response.members[0].metadata, Bytes::from("client"));
    assert_eq!(h.group.state(), GroupState::CompletingRebalance);

    let synced = sync_responses(&h.leader_sync("client-1", 1, 3_200));
    assert_eq!(synced["client-1"].assignment, assignment_of("client-1"));
    assert_eq!(h.group.state(), GroupState::Stable);
    assert_eq!(h.group.heartbeat("client-1", None, 1, 4_000), NONE);
}

#[test]
fn member_joining_during_initial_delay_extends_it() {
    let mut h = Harness::new(config());
    let a = h.join_new_member("a", 0);
    let b = h.join_new_member("b", 2_000);
    assert!(h.group.tick(INITIAL_DELAY_MS).is_empty());
    assert_eq!(h.group.state(), GroupState::PreparingRebalance);
    let joined = join_responses(&h.group.tick(2 * INITIAL_DELAY_MS));
    assert_eq!(joined.keys().collect::<Vec<_>>(), [&a, &b]);
}

#[test]
fn three_members_each_receive_their_own_assignment() {
    let mut h = Harness::new(config());
    let ids: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|client| h.join_new_member(client, 0))
        .collect();
    let (effects, now) = h.finish_join_phase();
    assert_eq!(now, STABLE_AT_MS);
    let joined = join_responses(&effects);
    let leader = h.group.leader_id().unwrap().to_owned();
    assert_eq!(leader, "a-1");
    for id in &ids {
        let response = &joined[id];
        assert_eq!(response.generation_id, 1);
        assert_eq!(response.leader, leader);
        // Only the leader learns the members and their metadata.
        let expected = if *id == leader { 3 } else { 0 };
        assert_eq!(response.members.len(), expected);
    }

    // Followers that sync before the leader wait.
    for follower in &ids[1..] {
        let (outcome, effects) = h.group.sync(sync_request(follower, 1), now + 100);
        assert_eq!(outcome, SyncOutcome::Pending);
        assert!(effects.is_empty());
    }
    let synced = sync_responses(&h.leader_sync(&leader, 1, now + 200));
    assert_eq!(synced.len(), 3);
    for id in &ids {
        assert_eq!(synced[id].error_code, NONE);
        assert_eq!(synced[id].assignment, assignment_of(id));
        assert_eq!(h.group.member(id).unwrap().assignment, assignment_of(id));
    }

    // A member that lost its response syncs again and is answered at once.
    let response = sync_responded(h.group.sync(sync_request(&ids[2], 1), now + 300).0);
    assert_eq!(response.assignment, assignment_of(&ids[2]));
}

#[test]
fn member_that_stops_heartbeating_is_removed_and_the_rest_must_rejoin() {
    let (mut h, ids) = Harness::stable_group(&["a", "b", "c"]);
    let (a, b, c) = (&ids[0], &ids[1], &ids[2]);
    let now = STABLE_AT_MS + 8_000;
    assert_eq!(h.group.heartbeat(a, None, 1, now), NONE);
    assert_eq!(h.group.heartbeat(b, None, 1, now), NONE);
    // c last proved it was alive when its SyncGroup was answered.
    let expiry = STABLE_AT_MS + i64::from(SESSION_TIMEOUT_MS);
    assert_eq!(h.group.next_deadline_ms(), Some(expiry));
    assert!(h.group.tick(expiry - 1).is_empty());
    assert_eq!(h.group.state(), GroupState::Stable);

    assert!(h.group.tick(expiry).is_empty());
    assert!(h.group.member(c).is_none());
    assert_eq!(h.group.state(), GroupState::PreparingRebalance);
    assert_eq!(h.group.heartbeat(a, None, 1, expiry), REBALANCE_IN_PROGRESS);
    assert_eq!(h.group.heartbeat(b, None, 1, expiry), REBALANCE_IN_PROGRESS);

    let (outcome, effects) = h.join(join_request(a, "a"), expiry + 10);
    assert_eq!(outcome, JoinOutcome::Pending);
    assert!(effects.is_empty());
    assert_eq!(
        h.group.heartbeat(b, None, 1, expiry + 20),
        REBALANCE_IN_PROGRESS
    );

    // The last member rejoining completes the join phase at once.
    let (outcome, effects) = h.join(join_request(b, "b"), expiry + 30);
    assert_eq!(outcome, JoinOutcome::Pending);
    let joined = join_responses(&effects);
    assert_eq!(joined.len(), 2);
    assert_eq!(joined[a].generation_id, 2);
    assert_eq!(joined[a].members.len(), 2);
    assert_eq!(h.group.state(), GroupState::CompletingRebalance);
    assert_eq!(h.group.heartbeat(b, None, 2, expiry + 40), NONE);
}

#[test]
fn leave_starts_a_rebalance_without_the_leaving_member() {
    let (mut h, ids) = Harness::stable_group(&["a", "b"]);
    let (a, b) = (&ids[0], &ids[1]);
    let leaving = [
        MemberIdentity {
            member_id: b.clone(),
            group_instance_id: None,
        },
        MemberIdentity {
            member_id: "ghost".to_owned(),
            group_instance_id: None,
        },
    ];
    let (response, effects) = h.group.leave(&leaving, 15_000);
    assert_eq!(response.error_code, NONE);
    let codes: Vec<i16> = response.members.iter().map(|m| m.error_code).collect();
    assert_eq!(codes, [NONE, UNKNOWN_MEMBER_ID]);
    assert!(effects.is_empty());
    assert_eq!(h.group.state(), GroupState::PreparingRebalance);

    let (outcome, effects) = h.join(join_request(a, "a"), 15_100);
    assert_eq!(outcome, JoinOutcome::Pending);
    let joined = join_responses(&effects);
    assert_eq!(joined[a].generation_id, 2);
    assert_eq!(joined[a].leader, *a);
    assert_eq!(joined[a].members.len(), 1);
    assert_eq!(h.group.heartbeat(b, None, 2, 15_200), UNKNOWN_MEMBER_ID);
}

#[test]
fn last_member_leaving_empties_the_group_at_the_next_generation() {
    let (mut h, ids) = Harness::stable_group(&["a"]);
    let leaving = [MemberIdentity {
        member_id: ids[0].clone(),
        group_instance_id: None,
    }];
    let (response, _) = h.group.leave(&leaving, 15_000);
    assert_eq!(response.members[0].error_code, NONE);
    assert_eq!(h.group.state(), GroupState::Empty);
    assert_eq!(h.group.generation_id(), 2);
    assert_eq!(h.group.leader_id(), None);
    assert_eq!(h.group.protocol_name(), None);
}

#[test]
fn stale_generation_gets_illegal_generation() {
    let (mut h, ids) = Harness::stable_group(&["a", "b"]);
    let (a, b) = (&ids[0], &ids[1]);
    assert_eq!(h.group.heartbeat(b, None, 0, 14_000), ILLEGAL_GENERATION);
    assert_eq!(h.group.heartbeat(b, None, 2, 14_000), ILLEGAL_GENERATION);
    let response = sync_responded(h.group.sync(sync_request(b, 0), 14_000).0);
    assert_eq!(response.error_code, ILLEGAL_GENERATION);

    // After the leader rejoins, a sync for the old generation learns of the rebalance.
    let (outcome, _) = h.join(join_request(a, "a"), 14_100);
    assert_eq!(outcome, JoinOutcome::Pending);
    let response = sync_responded(h.group.sync(sync_request(b, 1), 14_200).0);
    assert_eq!(response.error_code, REBALANCE_IN_PROGRESS);
}

#[test]
fn unknown_member_gets_unknown_member_id() {
    let (mut h, _) = Harness::stable_group(&["a"]);
    assert_eq!(
        h.group.heartbeat("ghost", None, 1, 14_000),
        UNKNOWN_MEMBER_ID
    );
    let response = sync_responded(h.group.sync(sync_request("ghost", 1), 14_000).0);
    assert_eq!(response.error_code, UNKNOWN_MEMBER_ID);
    let response = responded(h.join(join_request("ghost", "ghost"), 14_000).0);
    assert_eq!(response.error_code, UNKNOWN_MEMBER_ID);
    assert_eq!(response.member_id, "ghost");
    assert_eq!(response.generation_id, UNKNOWN_GENERATION_ID);
}

#[test]
fn member_that_does_not_rejoin_within_the_rebalance_timeout_is_dropped() {
    let (mut h, ids) = Harness::stable_group(&["a", "b"]);
    let (a, b) = (&ids[0], &ids[1]);
    let start = 14_000;
    let (outcome, effects) = h.join(join_request(a, "a"), start);
    assert_eq!(outcome, JoinOutcome::Pending);
    assert!(effects.is_empty());
    let deadline = start + i64::from(REBALANCE_TIMEOUT_MS);
    // b keeps heartbeating, so only the rebalance timeout can drop it.
    let mut now = start;
    while now + 5_000 < deadline {
        now += 5_000;
        assert_eq!(h.group.heartbeat(b, None, 1, now), REBALANCE_IN_PROGRESS);
        assert!(h.group.tick(now).is_empty());
    }
    assert!(h.group.tick(deadline - 1).is_empty());

    let joined = join_responses(&h.group.tick(deadline));
    assert_eq!(joined.keys().collect::<Vec<_>>(), [a]);
    assert_eq!(joined[a].generation_id, 2);
    assert_eq!(joined[a].members.len(), 1);
    assert!(h.group.member(b).is_none());
    assert_eq!(h.group.heartbeat(b, None, 1, deadline), UNKNOWN_MEMBER_ID);
}

#[test]
fn leader_that_does_not_rejoin_is_replaced_by_a_member_that_did() {
    let (mut h, ids) = Harness::stable_group(&["a", "b"]);
    let (a, b) = (&ids[0], &ids[1]);
    // A follower with unchanged metadata would just be told the current generation.
    let (outcome, _) = h.join(join_request(b, "b-with-new-subscription"), 14_000);
    assert_eq!(outcome, JoinOutcome::Pending);
    let joined = join_responses(&h.group.tick(14_000 + i64::from(REBALANCE_TIMEOUT_MS)));
    assert_eq!(joined[b].leader, *b);
    assert_eq!(joined[b].members.len(), 1);
    assert!(h.group.member(a).is_none());
}

#[test]
fn protocol_is_chosen_by_the_members_votes() {
    let mut h = Harness::new(config());
    let preferences: [(&str, &[(&str, &str)]); 3] = [
        ("a", &[("roundrobin", "a-rr"), ("range", "a-range")]),
        ("b", &[("range", "b-range"), ("roundrobin", "b-rr")]),
        // "sticky" is not supported by everyone, so c's vote goes to its next choice.
        (
            "c",
            &[
                ("sticky", "c-sticky"),
                ("range", "c-range"),
                ("roundrobin", "c-rr"),
            ],
        ),
    ];
    for (i, (client, list)) in preferences.iter().enumerate() {
        let request = JoinRequest {
            protocols: protocols(list),
            require_known_member_id: false,
            ..join_request("", client)
        };
        let (outcome, _) = h.join(request, i as i64);
        assert_eq!(outcome, JoinOutcome::Pending);
    }
    let joined = join_responses(&h.finish_join_phase().0);
    let leader = &joined["a-1"];
    assert_eq!(leader.protocol_name.as_deref(), Some("range"));
    let metadata: Vec<&Bytes> = leader.members.iter().map(|m| &m.metadata).collect();
    assert_eq!(metadata, ["a-range", "b-range", "c-range"]);
}

#[test]
fn protocol_tie_goes_to_the_smallest_name() {
    let mut h = Harness::new(config());
    for (i, (client, list)) in [
        ("a", [("roundrobin", ""), ("range", "")]),
        ("b", [("range", ""), ("roundrobin", "")]),
    ]
    .iter()
    .enumerate()
    {
        let request = JoinRequest {
            protocols: protocols(list),
            require_known_member_id: false,
            ..join_request("", client)
        };
        h.join(request, i as i64);
    }
    h.finish_join_phase();
    assert_eq!(h.group.protocol_name(), Some("range"));
}

#[test]
fn member_without_a_common_protocol_gets_inconsistent_group_protocol() {
    let (mut h, _) = Harness::stable_group(&["a"]);
    let request = JoinRequest {
        protocols: protocols(&[("roundrobin", "")]),
        ..join_request("", "b")
    };
    let response = responded(h.join(request, 14_000).0);
    assert_eq!(response.error_code, INCONSISTENT_GROUP_PROTOCOL);

    let request = JoinRequest {
        protocol_type: "connect".to_owned(),
        ..join_request("", "b")
    };
    let response = responded(h.join(request, 14_000).0);
    assert_eq!(response.error_code, INCONSISTENT_GROUP_PROTOCOL);
    assert_eq!(h.group.state(), GroupState::Stable);

    let mut empty = Harness::new(config());
    let request = JoinRequest {
        protocols: Vec::new(),
        ..join_request("", "a")
    };
    let response = responded(empty.join(request, 0).0);
    assert_eq!(response.error_code, INCONSISTENT_GROUP_PROTOCOL);
}

fn static_join(member_id: &str, client_id: &str, instance_id: &str) -> JoinRequest {
    JoinRequest {
        group_instance_id: Some(instance_id.to_owned()),
        ..join_request(member_id, client_id)
    }
}

/// A stable group of two static members, `i-a` (the leader) and `i-b`.
fn stable_static_group() -> (Harness, String, String) {
    let mut h = Harness::new(config());
    // Static members are added at once, without MEMBER_ID_REQUIRED.
    let (outcome, _) = h.join(static_join("", "a", "i-a"), 0);
    assert_eq!(outcome, JoinOutcome::Pending);
    let (outcome, _) = h.join(static_join("", "b", "i-b"), 0);
    assert_eq!(outcome, JoinOutcome::Pending);
    let (_, now) = h.finish_join_phase();
    assert_eq!(now, STABLE_AT_MS);
    let (a, b) = ("a-1".to_owned(), "b-2".to_owned());
    assert_eq!(h.group.leader_id(), Some(a.as_str()));
    let request = SyncRequest {
        group_instance_id: Some("i-b".to_owned()),
        ..sync_request(&b, 1)
    };
    assert_eq!(h.group.sync(request, STABLE_AT_MS).0, SyncOutcome::Pending);
    h.leader_sync(&a, 1, STABLE_AT_MS);
    assert_eq!(h.group.state(), GroupState::Stable);
    (h, a, b)
}

#[test]
fn static_member_rejoining_with_a_new_id_keeps_generation_and_assignment() {
    let (mut h, a, b) = stable_static_group();
    let response = responded(h.join(static_join("", "b", "i-b"), 15_000).0);
    assert_eq!(response.error_code, NONE);
    assert_eq!(response.member_id, "b-3");
    assert_eq!(response.generation_id, 1);
    assert_eq!(response.leader, a);
    assert!(response.members.is_empty());
    assert_eq!(h.group.state(), GroupState::Stable);
    assert_eq!(h.group.generation_id(), 1);

    let request = SyncRequest {
        group_instance_id: Some("i-b".to_owned()),
        ..sync_request("b-3", 1)
    };
    let response = sync_responded(h.group.sync(request, 15_100).0);
    assert_eq!(response.assignment, assignment_of(&b));

    // The old member id is fenced, not just unknown.
    assert_eq!(
        h.group.heartbeat(&b, Some("i-b"), 1, 15_200),
        FENCED_INSTANCE_ID
    );
    let request = SyncRequest {
        group_instance_id: Some("i-b".to_owned()),
        ..sync_request(&b, 1)
    };
    let response = sync_responded(h.group.sync(request, 15_200).0);
    assert_eq!(response.error_code, FENCED_INSTANCE_ID);
    assert_eq!(
        h.group.can_commit(&b, 1, Some("i-b")),
        Err(FENCED_INSTANCE_ID)
    );
    assert_eq!(h.group.heartbeat("b-3", Some("i-b"), 1, 15_200), NONE);
}

#[test]
fn replaced_static_leader_is_not_told_it_leads() {
    let (mut h, a, _) = stable_static_group();
    let response = responded(h.join(static_join("", "a", "i-a"), 15_000).0);
    assert_eq!(response.member_id, "a-3");
    assert_eq!(response.leader, a);
    assert_eq!(h.group.leader_id(), Some("a-3"));
}

#[test]
fn static_member_replaced_while_awaiting_join_gets_fenced() {
    let (mut h, a, b) = stable_static_group();
    let (outcome, _) = h.join(static_join(&b, "b-with-new-subscription", "i-b"), 15_000);
    assert_eq!(outcome, JoinOutcome::Pending);
    assert_eq!(h.group.state(), GroupState::PreparingRebalance);
    let (outcome, effects) = h.join(static_join("", "b", "i-b"), 15_100);
    assert_eq!(outcome, JoinOutcome::Pending);
    assert_eq!(join_responses(&effects)[&b].error_code, FENCED_INSTANCE_ID);
    // The leader rejoins and the new id is in the next generation.
    let (_, effects) = h.join(static_join(&a, "a", "i-a"), 15_200);
    let joined = join_responses(&effects);
    assert_eq!(joined["b-3"].generation_id, 2);
    assert_eq!(joined[&a].members.len(), 2);
}

#[test]
fn static_member_that_does_not_rejoin_stays_until_its_session_expires() {
    let (mut h, a, b) = stable_static_group();
    let (outcome, _) = h.join(static_join(&a, "a", "i-a"), 14_000);
    assert_eq!(outcome, JoinOutcome::Pending);
    let end = 14_000 + i64::from(REBALANCE_TIMEOUT_MS);
    // b heartbeats until just before the rebalance times out, then goes quiet.
    assert_eq!(
        h.group.heartbeat(&b, Some("i-b"), 1, end - 1),
        REBALANCE_IN_PROGRESS
    );
    let joined = join_responses(&h.group.tick(end));
    assert_eq!(joined[&a].members.len(), 2);
    assert!(h.group.member(&b).is_some());
    assert!(h
        .group
        .tick(end - 1 + i64::from(SESSION_TIMEOUT_MS))
        .is_empty());
    assert!(h.group.member(&b).is_none());
    assert_eq!(h.group.state(), GroupState::PreparingRebalance);
}

#[test]
fn administrator_removes_a_static_member_by_instance_id() {
    let (mut h, _, b) = stable_static_group();
    let leaving = [
        MemberIdentity {
            member_id: String::new(),
            group_instance_id: Some("i-b".to_owned()),
        },
        MemberIdentity {
            member_id: String::new(),
            group_instance_id: Some("i-unknown".to_owned()),
        },
    ];
    let (response, _) = h.group.leave(&leaving, 15_000);
    let codes: Vec<i16> = response.members.iter().map(|m| m.error_code).collect();
    assert_eq!(codes, [NONE, UNKNOWN_MEMBER_ID]);
    assert!(h.group.member(&b).is_none());
    assert_eq!(h.group.state(), GroupState::PreparingRebalance);
}

#[test]
fn member_rejoining_with_unchanged_metadata_learns_the_current_generation() {
    let (mut h, ids) = Harness::stable_group(&["a", "b"]);
    let (a, b) = (&ids[0], &ids[1]);
    // A follower in a stable group: no rebalance.
    let response = responded(h.join(join_request(b, "b"), 14_000).0);
    assert_eq!(response.generation_id, 1);
    assert_eq!(response.leader, *a);
    assert!(response.members.is_empty());
    assert_eq!(h.group.state(), GroupState::Stable);

    // The leader rejoining starts a rebalance; once it completes, a leader that lost its
    // response joins again and is handed the members once more.
    assert_eq!(h.join(join_request(a, "a"), 14_100).0, JoinOutcome::Pending);
    assert_eq!(h.join(join_request(b, "b"), 14_200).0, JoinOutcome::Pending);
    assert_eq!(h.group.state(), GroupState::CompletingRebalance);
    let response = responded(h.join(join_request(a, "a"), 14_300).0);
    assert_eq!(response.generation_id, 2);
    assert_eq!(response.members.len(), 2);
    assert_eq!(h.group.state(), GroupState::CompletingRebalance);
}

#[test]
fn parked_sync_learns_that_a_new_rebalance_started() {
    let mut h = Harness::new(config());
    let a = h.join_new_member("a", 0);
    let b = h.join_new_member("b", 0);
    h.finish_join_phase();
    assert_eq!(h.group.state(), GroupState::CompletingRebalance);
    let (outcome, _) = h.group.sync(sync_request(&b, 1), STABLE_AT_MS);
    assert_eq!(outcome, SyncOutcome::Pending);

    let request = JoinRequest {
        require_known_member_id: false,
        ..join_request("", "c")
    };
    let (outcome, effects) = h.join(request, STABLE_AT_MS + 100);
    assert_eq!(outcome, JoinOutcome::Pending);
    let synced = sync_responses(&effects);
    assert_eq!(synced[&b].error_code, REBALANCE_IN_PROGRESS);
    assert_eq!(h.group.state(), GroupState::PreparingRebalance);
    // The leader's assignment for the old generation is refused.
    let response = sync_responded(h.group.sync(sync_request(&a, 1), STABLE_AT_MS + 200).0);
    assert_eq!(response.error_code, REBALANCE_IN_PROGRESS);
}

#[test]
fn session_timeout_must_be_within_the_configured_bounds() {
    let mut h = Harness::new(config());
    for (session_timeout_ms, expected) in [
        (5_999, INVALID_SESSION_TIMEOUT),
        (1_800_001, INVALID_SESSION_TIMEOUT),
        (6_000, MEMBER_ID_REQUIRED),
        (1_800_000, MEMBER_ID_REQUIRED),
    ] {
        let request = JoinRequest {
            session_timeout_ms,
            ..join_request("", "a")
        };
        let response = responded(h.join(request, 0).0);
        assert_eq!(response.error_code, expected, "{session_timeout_ms}");
    }
}

#[test]
fn group_max_size_turns_away_new_members() {
    let mut h = Harness::new(GroupConfig {
        group_max_size: 2,
        ..config()
    });
    h.join_new_member("a", 0);
    h.join_new_member("b", 0);
    let response = responded(h.join(join_request("", "c"), 100).0);
    assert_eq!(response.error_code, GROUP_MAX_SIZE_REACHED);
    assert_eq!(response.member_id, "");

    let (mut stable, _) = Harness::stable_group(&["a", "b"]);
    stable.group.config.group_max_size = 2;
    let response = responded(stable.join(join_request("", "c"), 14_000).0);
    assert_eq!(response.error_code, GROUP_MAX_SIZE_REACHED);
    assert_eq!(stable.group.state(), GroupState::Stable);
}

#[test]
fn unused_pending_member_id_expires_and_stops_holding_the_rebalance() {
    let (mut h, ids) = Harness::stable_group(&["a"]);
    let a = &ids[0];
    let response = responded(h.join(join_request("", "b"), 14_000).0);
    assert_eq!(response.error_code, MEMBER_ID_REQUIRED);
    // a rejoins, but the rebalance also waits for the id it handed to b.
    let (outcome, effects) = h.join(join_request(a, "a"), 14_100);
    assert_eq!(outcome, JoinOutcome::Pending);
    assert!(effects.is_empty());
    let expiry = 14_000 + i64::from(SESSION_TIMEOUT_MS);
    assert!(h.group.tick(expiry - 1).is_empty());
    let joined = join_responses(&h.group.tick(expiry));
    assert_eq!(joined[a].generation_id, 2);
    assert!(!h.group.is_pending_member(&response.member_id));
}

#[test]
fn can_commit_follows_offset_commit_rules() {
    let mut empty = Group::new("simple", config());
    assert_eq!(empty.can_commit("", UNKNOWN_GENERATION_ID, None), Ok(()));
    assert_eq!(empty.can_commit("x", 1, None), Err(UNKNOWN_MEMBER_ID));

    let (mut h, ids) = Harness::stable_group(&["a", "b"]);
    let (a, b) = (&ids[0], &ids[1]);
    assert_eq!(h.group.can_commit(b, 1, None), Ok(()));
    assert_eq!(h.group.can_commit(b, 0, None), Err(ILLEGAL_GENERATION));
    assert_eq!(h.group.can_commit("ghost", 1, None), Err(UNKNOWN_MEMBER_ID));
    assert_eq!(
        h.group.can_commit("", UNKNOWN_GENERATION_ID, None),
        Err(UNKNOWN_MEMBER_ID)
    );
    assert_eq!(
        h.group.can_commit(b, 1, Some("i-unknown")),
        Err(UNKNOWN_MEMBER_ID)
    );

    // Commits are allowed while the group prepares a rebalance, not while it completes one.
    h.join(join_request(a, "a"), 14_000);
    assert_eq!(h.group.can_commit(b, 1, None), Ok(()));
    h.join(join_request(b, "b"), 14_100);
    assert_eq!(h.group.state(), GroupState::CompletingRebalance);
    assert_eq!(h.group.can_commit(b, 2, None), Err(REBALANCE_IN_PROGRESS));

    assert_eq!(empty.delete(), Ok(()));
    assert_eq!(
        empty.can_commit("", UNKNOWN_GENERATION_ID, None),
        Err(COORDINATOR_NOT_AVAILABLE)
    );
}

#[test]
fn only_an_empty_group_can_be_deleted_and_a_dead_group_takes_no_requests() {
    let (mut h, ids) = Harness::stable_group(&["a"]);
    assert_eq!(h.group.delete(), Err(NON_EMPTY_GROUP));
    let mut group = Group::new("gone", config());
    assert_eq!(group.delete(), Ok(()));
    assert_eq!(group.delete(), Err(GROUP_ID_NOT_FOUND));
    assert_eq!(group.state(), GroupState::Dead);
    h.group = group;
    let response = responded(h.join(join_request("", "a"), 0).0);
    assert_eq!(response.error_code, COORDINATOR_NOT_AVAILABLE);
    assert_eq!(
        h.group.heartbeat(&ids[0], None, 1, 0),
        COORDINATOR_NOT_AVAILABLE
    );
    assert_eq!(
        h.group.leave(&[], 0).0.error_code,
        COORDINATOR_NOT_AVAILABLE
    );
}

#[test]
fn error_codes_match_kafka() {
    use kafka_protocol::ResponseError as E;
    let pairs = [
        (COORDINATOR_NOT_AVAILABLE, E::CoordinatorNotAvailable),
        (ILLEGAL_GENERATION, E::IllegalGeneration),
        (INCONSISTENT_GROUP_PROTOCOL, E::InconsistentGroupProtocol),
        (UNKNOWN_MEMBER_ID, E::UnknownMemberId),
        (INVALID_SESSION_TIMEOUT, E::InvalidSessionTimeout),
        (REBALANCE_IN_PROGRESS, E::RebalanceInProgress),
        (NON_EMPTY_GROUP, E::NonEmptyGroup),
        (GROUP_ID_NOT_FOUND, E::GroupIdNotFound),
        (MEMBER_ID_REQUIRED, E::MemberIdRequired),
        (GROUP_MAX_SIZE_REACHED, E::GroupMaxSizeReached),
        (FENCED_INSTANCE_ID, E::FencedInstanceId),
    ];
    for (ours, kafka) in pairs {
        assert_eq!(ours, kafka.code(), "{kafka:?}");
    }
}

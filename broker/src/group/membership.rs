//! Membership of one classic consumer group: a pure state machine with no I/O.
//!
//! This is the part of Kafka's `GroupCoordinator` (classic protocol) that decides who is in
//! a group, together with the per-group state Kafka keeps in `GroupMetadata` and
//! `MemberMetadata`. Requests come in as method calls that take the current time as
//! `now_ms`; answers come out either at once or, for JoinGroup and SyncGroup, later as
//! [`Effect`]s, because Kafka parks those responses in a purgatory until the rebalance
//! completes. A driver owns the clock, the sockets and the `__consumer_offsets` log: it calls
//! [`Group::tick`] at [`Group::next_deadline_ms`] and sends every emitted effect to the
//! connection that waits for it.
//!
//! The states follow Kafka's `ClassicGroupState`:
//!
//! ```text
//!          join             everyone rejoined, or                leader's
//!   Empty ─────> PreparingRebalance ──the rebalance timeout──> CompletingRebalance ──SyncGroup──> Stable
//!    │  ▲               ▲   │                                       │                               │
//!    │  │               └───┼──── join with new metadata, leave, session expiry ────────────────────┘
//!    │  └───────────────────┘ join phase ends with no members left (next generation)
//!    └─ DeleteGroups ─> Dead
//! ```
//!
//! Kafka's own behaviour is kept where a client could observe it, including the quirks; each
//! departure says why in a comment. Not modelled yet: Kafka's `DelayedSync` (members that do
//! not send SyncGroup within the rebalance timeout are removed), the group records written to
//! `__consumer_offsets`, and reloading a group from them.

use std::collections::BTreeMap;

use bytes::Bytes;

/// Kafka's error codes (`org.apache.kafka.common.protocol.Errors`) that this module returns.
///
/// They are plain numbers so that the core does not depend on the codec; a unit test checks
/// them against `kafka_protocol::ResponseError`.
pub mod error_code {
    /// No error.
    pub const NONE: i16 = 0;
    /// The group is being deleted or unloaded; the client should find the coordinator again.
    pub const COORDINATOR_NOT_AVAILABLE: i16 = 15;
    /// The request carries a generation the group is no longer (or not yet) in.
    pub const ILLEGAL_GENERATION: i16 = 22;
    /// The member's protocol type or protocols do not match the group's.
    pub const INCONSISTENT_GROUP_PROTOCOL: i16 = 23;
    /// The member id is not a member of the group.
    pub const UNKNOWN_MEMBER_ID: i16 = 25;
    /// The session timeout is outside `group.min.session.timeout.ms` .. `group.max.session.timeout.ms`.
    pub const INVALID_SESSION_TIMEOUT: i16 = 26;
    /// The group is rebalancing; the member has to rejoin.
    pub const REBALANCE_IN_PROGRESS: i16 = 27;
    /// DeleteGroups on a group that still has members.
    pub const NON_EMPTY_GROUP: i16 = 68;
    /// DeleteGroups on a group that does not exist (any more).
    pub const GROUP_ID_NOT_FOUND: i16 = 69;
    /// KIP-394: a new dynamic member has to join again with the member id it is handed.
    pub const MEMBER_ID_REQUIRED: i16 = 79;
    /// The group already has `group.max.size` members.
    pub const GROUP_MAX_SIZE_REACHED: i16 = 81;
    /// KIP-345: another member has since joined with the same `group.instance.id`.
    pub const FENCED_INSTANCE_ID: i16 = 82;
}

use error_code::*;

/// The generation a client sends when it is not in a generation (Kafka's
/// `JoinGroupRequest.UNKNOWN_GENERATION_ID`). The unknown member id is the empty string.
pub const UNKNOWN_GENERATION_ID: i32 = -1;

/// How long a new member may wait in JoinGroup before it is considered dead, whatever its
/// session timeout (Kafka's `GroupCoordinator.NewMemberJoinTimeoutMs`, five minutes). It keeps a
/// client that disconnected during its first join from holding a rebalance up forever.
pub const NEW_MEMBER_JOIN_TIMEOUT_MS: i64 = 5 * 60 * 1000;

/// The broker settings that shape group membership, named after Kafka's `group.*` configs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms`: the shortest session timeout a member may ask for.
    pub group_min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`: the longest session timeout a member may ask for.
    pub group_max_session_timeout_ms: i32,
    /// `group.max.size`: the most members a group may have.
    pub group_max_size: usize,
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of an empty group waits
    /// for more members, so that a group starting up does not rebalance once per member.
    pub group_initial_rebalance_delay_ms: i32,
}

impl Default for GroupConfig {
    /// Kafka's defaults.
    fn default() -> Self {
        Self {
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            group_max_size: i32::MAX as usize,
            group_initial_rebalance_delay_ms: 3_000,
        }
    }
}

/// The state of a classic group, as Kafka's `ClassicGroupState`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members. Offsets may still be stored for the group (a "simple" consumer group).
    Empty,
    /// A rebalance has started; members must send JoinGroup again.
    PreparingRebalance,
    /// Every member has joined; the group waits for the leader's assignment in SyncGroup.
    CompletingRebalance,
    /// The leader's assignment has been handed out.
    Stable,
    /// The group has been deleted (or moved to another coordinator) and takes no requests.
    Dead,
}

impl GroupState {
    /// Kafka's name of the state, as ListGroups, DescribeGroups and
    /// `kafka-consumer-groups.sh` show it (`ClassicGroupState.toString`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
            Self::Dead => "Dead",
        }
    }
}

/// One entry of a member's protocol list: an assignor name and the subscription metadata the
/// client encoded for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Protocol {
    /// The protocol (assignor) name, e.g. `range`.
    pub name: String,
    /// Opaque to the broker; handed to the leader in JoinGroup.
    pub metadata: Bytes,
}

/// What the group knows about one member (Kafka's `MemberMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub member_id: String,
    /// Set for static members (KIP-345).
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// The protocol type of its JoinGroup, e.g. `consumer`.
    pub protocol_type: String,
    /// The protocols it supports, most preferred first.
    pub protocols: Vec<Protocol>,
    /// Its share of the leader's assignment for the current generation.
    pub assignment: Bytes,
    /// The last time it proved it was alive (heartbeat, join or sync).
    pub last_heartbeat_ms: i64,
    /// It joined during the rebalance in progress and has not had a JoinGroup response since,
    /// so it is not yet part of any generation (Kafka's `MemberMetadata.isNew`).
    pub is_new: bool,
    /// Its JoinGroup is parked until the join phase completes. During `PreparingRebalance`
    /// this is what "has rejoined for the next generation" means.
    pub awaiting_join: bool,
    /// Its SyncGroup is parked until the leader's assignment arrives.
    pub awaiting_sync: bool,
}

impl Member {
    /// The metadata it sent for `protocol_name`, empty if it does not support it.
    pub fn metadata(&self, protocol_name: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|p| p.name == protocol_name)
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }

    fn supports(&self, protocol_name: &str) -> bool {
        self.protocols.iter().any(|p| p.name == protocol_name)
    }

    /// Kafka's `MemberMetadata.shouldKeepAlive`: a parked JoinGroup or SyncGroup counts as a
    /// heartbeat, except that a new member may only wait `NEW_MEMBER_JOIN_TIMEOUT_MS`.
    fn should_keep_alive(&self, now_ms: i64) -> bool {
        now_ms < self.heartbeat_deadline_ms().unwrap_or(i64::MAX)
    }

    /// When the member expires if nothing else happens, or `None` while a parked request
    /// keeps it alive.
    fn heartbeat_deadline_ms(&self) -> Option<i64> {
        if self.awaiting_join {
            self.is_new
                .then(|| self.last_heartbeat_ms + NEW_MEMBER_JOIN_TIMEOUT_MS)
        } else if self.awaiting_sync {
            None
        } else {
            Some(self.last_heartbeat_ms + i64::from(self.session_timeout_ms))
        }
    }
}

/// A JoinGroup request, as far as membership is concerned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinRequest {
    /// Empty for a member that has no id yet.
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub protocol_type: String,
    /// Most preferred first.
    pub protocols: Vec<Protocol>,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    /// JoinGroup v4 and later (KIP-394): a dynamic member without an id is handed one with
    /// MEMBER_ID_REQUIRED and has to join again, instead of being added at once.
    pub require_known_member_id: bool,
}

/// One member in the leader's JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponseMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// The member's metadata for the chosen protocol.
    pub metadata: Bytes,
}

/// A JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    pub error_code: i16,
    pub generation_id: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// The leader's member id, empty on errors.
    pub leader: String,
    /// The member id of the receiver: the one it sent, or a new one.
    pub member_id: String,
    /// Every member with its metadata for the leader; empty for everyone else.
    pub members: Vec<JoinResponseMember>,
}

impl JoinResponse {
    /// Kafka's `JoinGroupResult(memberId, error)`: an error carries no generation.
    pub(crate) fn error(member_id: impl Into<String>, error_code: i16) -> Self {
        Self {
            error_code,
            generation_id: UNKNOWN_GENERATION_ID,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.into(),
            members: Vec::new(),
        }
    }
}

/// What [`Group::join`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JoinOutcome {
    /// Send this response now.
    Respond(JoinResponse),
    /// Park the request; its response comes later as [`Effect::JoinResponse`] for its member
    /// id, possibly among the effects of this same call.
    Pending,
}

/// A SyncGroup request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRequest {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub generation_id: i32,
    /// Sent from SyncGroup v5; checked against the group's when present.
    pub protocol_type: Option<String>,
    /// Sent from SyncGroup v5; checked against the group's when present.
    pub protocol_name: Option<String>,
    /// The leader's assignment as (member id, assignment); empty from followers.
    pub assignments: Vec<(String, Bytes)>,
}

/// A SyncGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    pub error_code: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResponse {
    pub(crate) fn error(error_code: i16) -> Self {
        Self {
            error_code,
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// What [`Group::sync`] answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncOutcome {
    /// Send this response now.
    Respond(SyncResponse),
    /// Park the request; its response comes later as [`Effect::SyncResponse`] for its member
    /// id, possibly among the effects of this same call.
    Pending,
}

/// A member named in a LeaveGroup request (v3 and later name several).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberIdentity {
    /// Empty when an administrator removes a static member by `group_instance_id` alone.
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

/// The result for one member of a LeaveGroup request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveMemberResponse {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub error_code: i16,
}

/// A LeaveGroup response: a top-level error, or one result per member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveResponse {
    pub error_code: i16,
    pub members: Vec<LeaveMemberResponse>,
}

/// A response that was parked earlier and is now due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Answer the parked JoinGroup of `member_id`.
    JoinResponse {
        member_id: String,
        response: JoinResponse,
    },
    /// Answer the parked SyncGroup of `member_id`.
    SyncResponse {
        member_id: String,
        response: SyncResponse,
    },
}

/// The pending join phase: Kafka's `InitialDelayedJoin` and `DelayedJoin` operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DelayedJoin {
    /// The first rebalance of an empty group. It never completes early; when it fires and
    /// members arrived meanwhile, it waits another `delay_ms`, up to the rebalance timeout.
    Initial {
        deadline_ms: i64,
        delay_ms: i64,
        remaining_ms: i64,
    },
    /// Completes as soon as every member has rejoined, or at the deadline.
    Rebalance { deadline_ms: i64 },
}

impl DelayedJoin {
    fn deadline_ms(self) -> i64 {
        match self {
            Self::Initial { deadline_ms, .. } | Self::Rebalance { deadline_ms } => deadline_ms,
        }
    }
}

/// One classic consumer group: its state, generation and members (Kafka's `GroupMetadata`),
/// and the membership half of `GroupCoordinator` that drives it.
#[derive(Debug, Clone)]
pub struct Group {
    group_id: String,
    config: GroupConfig,
    state: GroupState,
    generation_id: i32,
    protocol_type: Option<String>,
    /// The protocol chosen for the current generation.
    protocol_name: Option<String>,
    leader_id: Option<String>,
    /// Ordered by member id so that every choice the module makes is deterministic.
    members: BTreeMap<String, Member>,
    /// `group_instance_id` to the member id that currently holds it (KIP-345).
    static_members: BTreeMap<String, String>,
    /// KIP-394: member ids handed out with MEMBER_ID_REQUIRED, with the time they expire if
    /// the client does not join with them.
    pending_members: BTreeMap<String, i64>,
    delayed_join: Option<DelayedJoin>,
    /// A member joined while the initial delay ran (Kafka's `GroupMetadata.newMemberAdded`).
    new_member_added: bool,
}

impl Group {
    /// A new group in state `Empty` at generation 0.
    pub fn new(group_id: impl Into<String>, config: GroupConfig) -> Self {
        Self {
            group_id: group_id.into(),
            config,
            state: GroupState::Empty,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader_id: None,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            pending_members: BTreeMap::new(),
            delayed_join: None,
            new_member_added: false,
        }
    }

    /// A group rebuilt from its last stored record (Kafka's `GroupMetadataManager.loadGroup`):
    /// `Stable` at `generation_id` with `members` if there are any, else `Empty`. Every member
    /// counts as having just heartbeated, so one that does not come back expires after its
    /// session timeout.
    #[allow(clippy::too_many_arguments)] // One argument per field of the stored record.
    pub fn restore(
        group_id: impl Into<String>,
        config: GroupConfig,
        generation_id: i32,
        protocol_type: Option<String>,
        protocol_name: Option<String>,
        leader_id: Option<String>,
        members: Vec<Member>,
        now_ms: i64,
    ) -> Self {
        let mut group = Group::new(group_id, config);
        group.generation_id = generation_id;
        group.protocol_type = protocol_type;
        if members.is_empty() {
            return group;
        }
        group.protocol_name = protocol_name;
        group.leader_id = leader_id;
        group.state = GroupState::Stable;
        for mut member in members {
            member.last_heartbeat_ms = now_ms;
            member.is_new = false;
            member.awaiting_join = false;
            member.awaiting_sync = false;
            if let Some(instance_id) = &member.group_instance_id {
                group
                    .static_members
                    .insert(instance_id.clone(), member.member_id.clone());
            }
            group.members.insert(member.member_id.clone(), member);
        }
        group
    }

    pub fn group_id(&self) -> &str {
        &self.group_id
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    pub fn generation_id(&self) -> i32 {
        self.generation_id
    }

    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    /// The protocol chosen for the current generation.
    pub fn protocol_name(&self) -> Option<&str> {
        self.protocol_name.as_deref()
    }

    pub fn leader_id(&self) -> Option<&str> {
        self.leader_id.as_deref()
    }

    pub fn member(&self, member_id: &str) -> Option<&Member> {
        self.members.get(member_id)
    }

    /// The members, ordered by member id.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// Whether `member_id` was handed out with MEMBER_ID_REQUIRED and not yet used (KIP-394).
    pub fn is_pending_member(&self, member_id: &str) -> bool {
        self.pending_members.contains_key(member_id)
    }

    /// The earliest time at which [`Group::tick`] has something to do, if any.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        let members = self
            .members
            .values()
            .filter_map(Member::heartbeat_deadline_ms);
        let pending = self.pending_members.values().copied();
        let join = self.delayed_join.map(DelayedJoin::deadline_ms);
        members.chain(pending).chain(join).min()
    }

    /// A JoinGroup request (Kafka's `GroupCoordinator.handleJoinGroup`).
    ///
    /// `new_member_id_suffix` makes the unique part of a new member id, which is
    /// `{client_id}-{suffix}` as in Kafka; the driver passes a UUID generator, tests a counter.
    pub fn join(
        &mut self,
        request: JoinRequest,
        now_ms: i64,
        new_member_id_suffix: &mut impl FnMut() -> String,
    ) -> (JoinOutcome, Vec<Effect>) {
        let mut effects = Vec::new();
        let outcome = self.do_join(request, now_ms, new_member_id_suffix, &mut effects);
        // Kafka's handleJoinGroup ends with "attempt to complete JoinGroup": this join may
        // have been the last one the rebalance waited for.
        self.try_complete_join(now_ms, &mut effects);
        (outcome, effects)
    }

    fn do_join(
        &mut self,
        request: JoinRequest,
        now_ms: i64,
        new_member_id_suffix: &mut impl FnMut() -> String,
        effects: &mut Vec<Effect>,
    ) -> JoinOutcome {
        let respond_error =
            |member_id: &str, code| JoinOutcome::Respond(JoinResponse::error(member_id, code));
        if self.state == GroupState::Dead {
            return respond_error(&request.member_id, COORDINATOR_NOT_AVAILABLE);
        }
        if request.session_timeout_ms < self.config.group_min_session_timeout_ms
            || request.session_timeout_ms > self.config.group_max_session_timeout_ms
        {
            return respond_error(&request.member_id, INVALID_SESSION_TIMEOUT);
        }
        if !self.accept_joining_member(&request.member_id) {
            // Kafka removes a known member it turns away (the limit may have been lowered).
            self.remove_member_and_update_group(&request.member_id, now_ms, effects);
            return respond_error("", GROUP_MAX_SIZE_REACHED);
        }
        if request.member_id.is_empty() {
            self.new_member_join(request, now_ms, new_member_id_suffix, effects)
        } else {
            self.current_member_join(request, now_ms, effects)
        }
    }

    /// Kafka's `doNewMemberJoinGroup`: a join without a member id.
    fn new_member_join(
        &mut self,
        request: JoinRequest,
        now_ms: i64,
        new_member_id_suffix: &mut impl FnMut() -> String,
        effects: &mut Vec<Effect>,
    ) -> JoinOutcome {
        if !self.supports_protocols(&request.protocol_type, &request.protocols) {
            return JoinOutcome::Respond(JoinResponse::error("", INCONSISTENT_GROUP_PROTOCOL));
        }
        let member_id = format!("{}-{}", request.client_id, new_member_id_suffix());
        let old_static_member_id = request
            .group_instance_id
            .as_ref()
            .and_then(|instance_id| self.static_members.get(instance_id).cloned());
        if let Some(old_member_id) = old_static_member_id {
            self.update_static_member_and_rebalance(
                &old_member_id,
                member_id,
                request,
                now_ms,
                effects,
            )
        } else if request.group_instance_id.is_none() && request.require_known_member_id {
            // KIP-394: remember the id and hand it out; the member is added when it joins with
            // it. A client that never does is forgotten after its session timeout.
            let expires_ms = now_ms + i64::from(request.session_timeout_ms);
            self.pending_members.insert(member_id.clone(), expires_ms);
            JoinOutcome::Respond(JoinResponse::error(member_id, MEMBER_ID_REQUIRED))
        } else {
            self.add_member_and_rebalance(member_id, request, now_ms, effects)
        }
    }

    /// Kafka's `doCurrentMemberJoinGroup`: a join with a member id.
    fn current_member_join(
        &mut self,
        request: JoinRequest,
        now_ms: i64,
        effects: &mut Vec<Effect>,
    ) -> JoinOutcome {
        let member_id = request.member_id.clone();
        let respond_error = |code| JoinOutcome::Respond(JoinResponse::error(&member_id, code));
        if self.pending_members.contains_key(&member_id) {
            // Pending ids are only handed to dynamic members, so a static join with one is a
            // client bug; Kafka throws IllegalStateException, we turn the request away.
            if request.group_instance_id.is_some() {
                return respond_error(UNKNOWN_MEMBER_ID);
            }
            return self.add_member_and_rebalance(member_id.clone(), request, now_ms, effects);
        }
        if let Err(code) =
            self.validate_current_member(&member_id, request.group_instance_id.as_deref())
        {
            return respond_error(code);
        }
        if !self.supports_protocols(&request.protocol_type, &request.protocols) {
            return respond_error(INCONSISTENT_GROUP_PROTOCOL);
        }
        let is_leader = self.leader_id.as_deref() == Some(member_id.as_str());
        let unchanged = self
            .members
            .get(&member_id)
            .is_some_and(|member| member.protocols == request.protocols);
        match self.state {
            GroupState::PreparingRebalance => {
                self.update_member_and_rebalance(&member_id, request, now_ms, effects)
            }
            // A member that lost its JoinGroup response joins again with the same metadata:
            // hand it the current generation. The leader sees the members again.
            GroupState::CompletingRebalance if unchanged => {
                JoinOutcome::Respond(self.current_generation_response(&member_id, is_leader))
            }
            // In a stable group a follower with unchanged metadata just learns the current
            // generation; the leader rejoining means it wants a new assignment (for example
            // because the topics it subscribes to changed).
            GroupState::Stable if unchanged && !is_leader => {
                JoinOutcome::Respond(self.current_generation_response(&member_id, false))
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.update_member_and_rebalance(&member_id, request, now_ms, effects)
            }
            // An empty or dead group has no members, so validate_current_member failed above.
            GroupState::Empty | GroupState::Dead => respond_error(UNKNOWN_MEMBER_ID),
        }
    }

    /// A SyncGroup request (Kafka's `GroupCoordinator.handleSyncGroup`).
    pub fn sync(&mut self, request: SyncRequest, now_ms: i64) -> (SyncOutcome, Vec<Effect>) {
        let mut effects = Vec::new();
        let respond_error = |code| SyncOutcome::Respond(SyncResponse::error(code));
        if self.state == GroupState::Dead {
            return (respond_error(COORDINATOR_NOT_AVAILABLE), effects);
        }
        if let Err(code) =
            self.validate_current_member(&request.member_id, request.group_instance_id.as_deref())
        {
            return (respond_error(code), effects);
        }
        if request.generation_id != self.generation_id {
            return (respond_error(ILLEGAL_GENERATION), effects);
        }
        let inconsistent = |sent: &Option<String>, ours: &Option<String>| {
            sent.as_ref()
                .is_some_and(|sent| ours.as_ref() != Some(sent))
        };
        if inconsistent(&request.protocol_type, &self.protocol_type)
            || inconsistent(&request.protocol_name, &self.protocol_name)
        {
            return (respond_error(INCONSISTENT_GROUP_PROTOCOL), effects);
        }
        let outcome = match self.state {
            GroupState::Empty | GroupState::Dead => respond_error(UNKNOWN_MEMBER_ID),
            GroupState::PreparingRebalance => respond_error(REBALANCE_IN_PROGRESS),
            GroupState::CompletingRebalance => {
                if let Some(member) = self.members.get_mut(&request.member_id) {
                    member.awaiting_sync = true;
                }
                if self.leader_id.as_deref() == Some(request.member_id.as_str()) {
                    // Kafka first writes the group with its assignment to __consumer_offsets
                    // and only moves to Stable once that write succeeds; that write belongs to
                    // the driver, which will need it before these effects are sent.
                    self.set_and_propagate_assignment(&request.assignments, now_ms, &mut effects);
                    self.state = GroupState::Stable;
                }
                SyncOutcome::Pending
            }
            GroupState::Stable => match self.members.get_mut(&request.member_id) {
                Some(member) => {
                    // A member that lost its SyncGroup response asks again.
                    member.last_heartbeat_ms = now_ms;
                    let assignment = member.assignment.clone();
                    SyncOutcome::Respond(self.sync_response(assignment))
                }
                None => respond_error(UNKNOWN_MEMBER_ID),
            },
        };
        (outcome, effects)
    }

    /// A Heartbeat request (Kafka's `GroupCoordinator.handleHeartbeat`); returns its error code.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        group_instance_id: Option<&str>,
        generation_id: i32,
        now_ms: i64,
    ) -> i16 {
        if self.state == GroupState::Dead {
            return COORDINATOR_NOT_AVAILABLE;
        }
        if let Err(code) = self.validate_current_member(member_id, group_instance_id) {
            return code;
        }
        if generation_id != self.generation_id {
            return ILLEGAL_GENERATION;
        }
        let Some(member) = self.members.get_mut(member_id) else {
            return UNKNOWN_MEMBER_ID;
        };
        member.last_heartbeat_ms = now_ms;
        match self.state {
            // Members start heartbeating as soon as they have their JoinGroup response.
            GroupState::CompletingRebalance | GroupState::Stable => NONE,
            // The heartbeat still keeps the member alive while it is told to rejoin.
            GroupState::PreparingRebalance => REBALANCE_IN_PROGRESS,
            GroupState::Empty | GroupState::Dead => UNKNOWN_MEMBER_ID,
        }
    }

    /// A LeaveGroup request (Kafka's `GroupCoordinator.handleLeaveGroup`), for one member
    /// (v0 to v2) or several (v3 and later).
    pub fn leave(
        &mut self,
        leaving: &[MemberIdentity],
        now_ms: i64,
    ) -> (LeaveResponse, Vec<Effect>) {
        let mut effects = Vec::new();
        if self.state == GroupState::Dead {
            let response = LeaveResponse {
                error_code: COORDINATOR_NOT_AVAILABLE,
                members: Vec::new(),
            };
            return (response, effects);
        }
        let mut members = Vec::with_capacity(leaving.len());
        for identity in leaving {
            let instance_id = identity.group_instance_id.as_deref();
            let error_code = if identity.member_id.is_empty() {
                // An administrator removes a static member by its instance id alone.
                match instance_id.and_then(|id| self.static_members.get(id).cloned()) {
                    Some(member_id) => {
                        self.remove_member_and_update_group(&member_id, now_ms, &mut effects);
                        NONE
                    }
                    None => UNKNOWN_MEMBER_ID,
                }
            } else if self.pending_members.remove(&identity.member_id).is_some() {
                self.try_complete_join(now_ms, &mut effects);
                NONE
            } else {
                match self.validate_current_member(&identity.member_id, instance_id) {
                    Ok(()) => {
                        let member_id = identity.member_id.clone();
                        self.remove_member_and_update_group(&member_id, now_ms, &mut effects);
                        NONE
                    }
                    Err(code) => code,
                }
            };
            members.push(LeaveMemberResponse {
                member_id: identity.member_id.clone(),
                group_instance_id: identity.group_instance_id.clone(),
                error_code,
            });
        }
        let response = LeaveResponse {
            error_code: NONE,
            members,
        };
        (response, effects)
    }

    /// Lets time pass: forgets unused pending member ids, expires members whose session timed
    /// out (Kafka's `onExpireHeartbeat`) and fires the pending join phase (`DelayedJoin`,
    /// `InitialDelayedJoin`).
    pub fn tick(&mut self, now_ms: i64) -> Vec<Effect> {
        let mut effects = Vec::new();
        if self.state == GroupState::Dead {
            return effects;
        }
        let before = self.pending_members.len();
        self.pending_members
            .retain(|_, expires_ms| *expires_ms > now_ms);
        if self.pending_members.len() != before {
            self.try_complete_join(now_ms, &mut effects);
        }
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|member| !member.should_keep_alive(now_ms))
            .map(|member| member.member_id.clone())
            .collect();
        for member_id in expired {
            self.remove_member_and_update_group(&member_id, now_ms, &mut effects);
        }
        if self.state == GroupState::PreparingRebalance {
            match self.delayed_join {
                Some(DelayedJoin::Initial {
                    deadline_ms,
                    delay_ms,
                    remaining_ms,
                }) if deadline_ms <= now_ms => {
                    if self.new_member_added && remaining_ms > 0 {
                        // Kafka's InitialDelayedJoin.onComplete, arithmetic included.
                        self.new_member_added = false;
                        let delay = i64::from(self.config.group_initial_rebalance_delay_ms)
                            .min(remaining_ms);
                        self.delayed_join = Some(DelayedJoin::Initial {
                            deadline_ms: now_ms + delay,
                            delay_ms: delay,
                            remaining_ms: (remaining_ms - delay_ms).max(0),
                        });
                    } else {
                        self.complete_join(now_ms, &mut effects);
                    }
                }
                Some(DelayedJoin::Rebalance { deadline_ms }) if deadline_ms <= now_ms => {
                    self.complete_join(now_ms, &mut effects);
                }
                _ => {}
            }
        }
        effects
    }

    /// Kafka's OffsetCommit checks (`GroupCoordinator.validateOffsetCommit`), for the offset
    /// store to call before it writes. Generation -1 with no member id commits for a group
    /// that only stores offsets, which is allowed while the group is empty.
    pub fn can_commit(
        &self,
        member_id: &str,
        generation_id: i32,
        group_instance_id: Option<&str>,
    ) -> Result<(), i16> {
        if self.state == GroupState::Dead {
            return Err(COORDINATOR_NOT_AVAILABLE);
        }
        if generation_id >= 0 || !member_id.is_empty() || group_instance_id.is_some() {
            self.validate_current_member(member_id, group_instance_id)?;
            if generation_id != self.generation_id {
                return Err(ILLEGAL_GENERATION);
            }
            if self.state == GroupState::CompletingRebalance {
                // The member has its JoinGroup response but not its assignment yet, so it
                // cannot own the partitions it commits for.
                return Err(REBALANCE_IN_PROGRESS);
            }
            Ok(())
        } else if self.state != GroupState::Empty {
            // While the group has members, only members commit.
            Err(UNKNOWN_MEMBER_ID)
        } else {
            Ok(())
        }
    }

    /// DeleteGroups for this group: only an empty group can be deleted, and it becomes `Dead`.
    pub fn delete(&mut self) -> Result<(), i16> {
        match self.state {
            GroupState::Dead => Err(GROUP_ID_NOT_FOUND),
            GroupState::Empty => {
                self.state = GroupState::Dead;
                self.pending_members.clear();
                self.delayed_join = None;
                Ok(())
            }
            _ => Err(NON_EMPTY_GROUP),
        }
    }

    // ---- Kafka's GroupMetadata ----

    /// Kafka's `validateCurrentMember`: a static member must present the member id that holds
    /// its instance id, and the member id must be in the group.
    fn validate_current_member(
        &self,
        member_id: &str,
        group_instance_id: Option<&str>,
    ) -> Result<(), i16> {
        if let Some(instance_id) = group_instance_id {
            match self.static_members.get(instance_id) {
                Some(current) if current != member_id => return Err(FENCED_INSTANCE_ID),
                Some(_) => {}
                None => return Err(UNKNOWN_MEMBER_ID),
            }
        }
        if self.members.contains_key(member_id) {
            Ok(())
        } else {
            Err(UNKNOWN_MEMBER_ID)
        }
    }

    /// Kafka's `acceptJoiningMember`: whether `group.max.size` leaves room for this member.
    fn accept_joining_member(&self, member_id: &str) -> bool {
        let max = self.config.group_max_size;
        match self.state {
            GroupState::Empty | GroupState::Dead => true,
            GroupState::PreparingRebalance => {
                self.members.get(member_id).is_some_and(|m| m.awaiting_join)
                    || self.members.values().filter(|m| m.awaiting_join).count() < max
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                self.members.contains_key(member_id) || self.members.len() < max
            }
        }
    }

    /// Kafka's `supportsProtocols`: an empty group takes any protocol type; otherwise the type
    /// must match and the member must support a protocol every member supports.
    fn supports_protocols(&self, protocol_type: &str, protocols: &[Protocol]) -> bool {
        if self.state == GroupState::Empty {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols
                .iter()
                .any(|p| self.members.values().all(|member| member.supports(&p.name)))
    }

    /// Kafka's `selectProtocol`: among the protocols every member supports, each member votes
    /// for the one it prefers most, and the most votes win. Kafka breaks ties by hash order; we
    /// take the smallest name so that the choice is deterministic.
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|p| p.name.as_str())
            .filter(|name| self.members.values().all(|member| member.supports(name)))
            .collect();
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for member in self.members.values() {
            let vote = member
                .protocols
                .iter()
                .map(|p| p.name.as_str())
                .find(|name| candidates.contains(name));
            if let Some(name) = vote {
                *votes.entry(name).or_default() += 1;
            }
        }
        // Iterating a BTreeMap visits names in order, and `max_by_key` keeps the last of equal
        // maxima, so reverse to keep the smallest name on a tie.
        votes
            .into_iter()
            .rev()
            .max_by_key(|&(_, count)| count)
            .map(|(name, _)| name.to_owned())
    }

    fn add(&mut self, member: Member) {
        if self.members.is_empty() {
            self.protocol_type = Some(member.protocol_type.clone());
        }
        if self.leader_id.is_none() {
            self.leader_id = Some(member.member_id.clone());
        }
        if let Some(instance_id) = &member.group_instance_id {
            self.static_members
                .insert(instance_id.clone(), member.member_id.clone());
        }
        self.members.insert(member.member_id.clone(), member);
    }

    /// Kafka's `GroupMetadata.remove` plus the callbacks `removeMemberAndUpdateGroup` fires:
    /// parked requests of the removed member are answered with UNKNOWN_MEMBER_ID.
    fn remove_member(&mut self, member_id: &str, effects: &mut Vec<Effect>) {
        let Some(member) = self.members.remove(member_id) else {
            return;
        };
        if member.awaiting_join {
            effects.push(Effect::JoinResponse {
                member_id: member.member_id.clone(),
                response: JoinResponse::error(&member.member_id, UNKNOWN_MEMBER_ID),
            });
        }
        if member.awaiting_sync {
            effects.push(Effect::SyncResponse {
                member_id: member.member_id.clone(),
                response: SyncResponse::error(UNKNOWN_MEMBER_ID),
            });
        }
        if let Some(instance_id) = &member.group_instance_id {
            if self.static_members.get(instance_id) == Some(&member.member_id) {
                self.static_members.remove(instance_id);
            }
        }
        if self.leader_id.as_deref() == Some(member_id) {
            self.leader_id = self.members.keys().next().cloned();
        }
    }

    // ---- Kafka's GroupCoordinator ----

    /// Kafka's `removeMemberAndUpdateGroup`.
    fn remove_member_and_update_group(
        &mut self,
        member_id: &str,
        now_ms: i64,
        effects: &mut Vec<Effect>,
    ) {
        if !self.members.contains_key(member_id) {
            return;
        }
        self.remove_member(member_id, effects);
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now_ms, effects);
            }
            GroupState::PreparingRebalance => self.try_complete_join(now_ms, effects),
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        member_id: String,
        request: JoinRequest,
        now_ms: i64,
        effects: &mut Vec<Effect>,
    ) -> JoinOutcome {
        // Kafka sets this when the group is rebalancing at generation 0; we key it on the
        // initial delay itself, which also covers a group that emptied and starts again.
        if matches!(self.delayed_join, Some(DelayedJoin::Initial { .. })) {
            self.new_member_added = true;
        }
        self.pending_members.remove(&member_id);
        self.add(Member {
            member_id,
            group_instance_id: request.group_instance_id,
            client_id: request.client_id,
            client_host: request.client_host,
            session_timeout_ms: request.session_timeout_ms,
            rebalance_timeout_ms: request.rebalance_timeout_ms,
            protocol_type: request.protocol_type,
            protocols: request.protocols,
            assignment: Bytes::new(),
            last_heartbeat_ms: now_ms,
            is_new: true,
            awaiting_join: true,
            awaiting_sync: false,
        });
        self.maybe_prepare_rebalance(now_ms, effects);
        JoinOutcome::Pending
    }

    fn update_member_and_rebalance(
        &mut self,
        member_id: &str,
        request: JoinRequest,
        now_ms: i64,
        effects: &mut Vec<Effect>,
    ) -> JoinOutcome {
        if let Some(member) = self.members.get_mut(member_id) {
            member.protocols = request.protocols;
            member.session_timeout_ms = request.session_timeout_ms;
            member.rebalance_timeout_ms = request.rebalance_timeout_ms;
            member.last_heartbeat_ms = now_ms;
            member.awaiting_join = true;
        }
        self.maybe_prepare_rebalance(now_ms, effects);
        JoinOutcome::Pending
    }

    /// Kafka's `updateStaticMemberAndRebalance` (KIP-345): a static member came back with a
    /// new member id. It takes over the old member's place and assignment, and the old id is
    /// fenced. A stable group whose protocol choice does not change skips the rebalance.
    fn update_static_member_and_rebalance(
        &mut self,
        old_member_id: &str,
        new_member_id: String,
        request: JoinRequest,
        now_ms: i64,
        effects: &mut Vec<Effect>,
    ) -> JoinOutcome {
        let current_leader = self.leader_id.clone().unwrap_or_default();
        let Some(mut member) = self.members.remove(old_member_id) else {
            // `static_members` only names members that are in `members`.
            return JoinOutcome::Respond(JoinResponse::error("", UNKNOWN_MEMBER_ID));
        };
        // Kafka's replaceStaticMember: answer the old id's parked requests with the fence.
        if member.awaiting_join {
            effects.push(Effect::JoinResponse {
                member_id: old_member_id.to_owned(),
                response: JoinResponse::error(old_member_id, FENCED_INSTANCE_ID),
            });
        }
        if member.awaiting_sync {
            effects.push(Effect::SyncResponse {
                member_id: old_member_id.to_owned(),
                response: SyncResponse::error(FENCED_INSTANCE_ID),
            });
        }
        member.member_id = new_member_id.clone();
        member.client_id = request.client_id;
        member.client_host = request.client_host;
        member.protocols = request.protocols;
        member.session_timeout_ms = request.session_timeout_ms;
        member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        member.last_heartbeat_ms = now_ms;
        member.awaiting_join = false;
        member.awaiting_sync = false;
        if self.leader_id.as_deref() == Some(old_member_id) {
            self.leader_id = Some(new_member_id.clone());
        }
        if let Some(instance_id) = &member.group_instance_id {
            self.static_members
                .insert(instance_id.clone(), new_member_id.clone());
        }
        self.members.insert(new_member_id.clone(), member);

        if self.state == GroupState::Stable && self.select_protocol() == self.protocol_name {
            // Return the old leader id even when the leader itself was replaced: a leader
            // that believed it was one would compute an assignment that a stable group never
            // distributes, so the new member must not think it leads.
            return JoinOutcome::Respond(JoinResponse {
                error_code: NONE,
                generation_id: self.generation_id,
                protocol_type: self.protocol_type.clone(),
                protocol_name: self.protocol_name.clone(),
                leader: current_leader,
                member_id: new_member_id,
                members: Vec::new(),
            });
        }
        if let Some(member) = self.members.get_mut(&new_member_id) {
            member.awaiting_join = true;
        }
        self.maybe_prepare_rebalance(now_ms, effects);
        JoinOutcome::Pending
    }

    fn maybe_prepare_rebalance(&mut self, now_ms: i64, effects: &mut Vec<Effect>) {
        if matches!(
            self.state,
            GroupState::Empty | GroupState::CompletingRebalance | GroupState::Stable
        ) {
            self.prepare_rebalance(now_ms, effects);
        }
    }

    /// Kafka's `prepareRebalance`: parked SyncGroups learn that their generation is over, and
    /// the join phase is scheduled: after the initial delay for an empty group, otherwise
    /// within the longest rebalance timeout of the members.
    fn prepare_rebalance(&mut self, now_ms: i64, effects: &mut Vec<Effect>) {
        if self.state == GroupState::CompletingRebalance {
            self.reset_and_propagate_assignment_error(REBALANCE_IN_PROGRESS, effects);
        }
        let rebalance_timeout_ms = self.rebalance_timeout_ms();
        self.delayed_join = Some(if self.state == GroupState::Empty {
            let delay_ms = i64::from(self.config.group_initial_rebalance_delay_ms);
            DelayedJoin::Initial {
                deadline_ms: now_ms + delay_ms,
                delay_ms,
                remaining_ms: (rebalance_timeout_ms - delay_ms).max(0),
            }
        } else {
            DelayedJoin::Rebalance {
                deadline_ms: now_ms + rebalance_timeout_ms,
            }
        });
        self.new_member_added = false;
        self.state = GroupState::PreparingRebalance;
        // Kafka's tryCompleteElseWatch: the join phase may already be complete.
        self.try_complete_join(now_ms, effects);
    }

    /// The group's rebalance timeout: the longest of its members'.
    fn rebalance_timeout_ms(&self) -> i64 {
        self.members
            .values()
            .map(|member| i64::from(member.rebalance_timeout_ms))
            .max()
            .unwrap_or(0)
    }

    /// Kafka's `DelayedJoin.tryComplete`: every member has rejoined and no handed-out member
    /// id is still expected. The initial delay never completes early.
    fn try_complete_join(&mut self, now_ms: i64, effects: &mut Vec<Effect>) {
        let all_joined = self.members.values().all(|member| member.awaiting_join)
            && self.pending_members.is_empty();
        if self.state == GroupState::PreparingRebalance
            && matches!(self.delayed_join, Some(DelayedJoin::Rebalance { .. }))
            && all_joined
        {
            self.complete_join(now_ms, effects);
        }
    }

    /// Kafka's `onCompleteJoin`: dynamic members that did not rejoin are dropped (static ones
    /// stay until their session expires, as KIP-345 intends), the next generation starts and
    /// every parked JoinGroup is answered.
    fn complete_join(&mut self, now_ms: i64, effects: &mut Vec<Effect>) {
        self.delayed_join = None;
        let not_rejoined: Vec<String> = self
            .members
            .values()
            .filter(|member| !member.awaiting_join && member.group_instance_id.is_none())
            .map(|member| member.member_id.clone())
            .collect();
        for member_id in not_rejoined {
            self.remove_member(&member_id, effects);
        }
        if !self.maybe_elect_new_joined_leader() && !self.members.is_empty() {
            // Only static members that have not rejoined are left: wait for them (or for
            // their sessions to expire) for another rebalance timeout.
            self.delayed_join = Some(DelayedJoin::Rebalance {
                deadline_ms: now_ms + self.rebalance_timeout_ms(),
            });
            return;
        }
        self.init_next_generation();
        let leader = self.leader_id.clone().unwrap_or_default();
        let joined: Vec<String> = self
            .members
            .values()
            .filter(|member| member.awaiting_join)
            .map(|member| member.member_id.clone())
            .collect();
        for member_id in joined {
            let is_leader = member_id == leader;
            let response = self.current_generation_response(&member_id, is_leader);
            if let Some(member) = self.members.get_mut(&member_id) {
                member.awaiting_join = false;
                member.is_new = false;
                member.last_heartbeat_ms = now_ms;
            }
            effects.push(Effect::JoinResponse {
                member_id,
                response,
            });
        }
    }

    /// Kafka's `maybeElectNewJoinedLeader`: the leader must be a member that rejoined; if it
    /// did not, any member that did takes over. False when nobody rejoined.
    fn maybe_elect_new_joined_leader(&mut self) -> bool {
        let Some(leader) = &self.leader_id else {
            return false;
        };
        if self.members.get(leader).is_some_and(|m| m.awaiting_join) {
            return true;
        }
        match self.members.values().find(|member| member.awaiting_join) {
            Some(member) => {
                self.leader_id = Some(member.member_id.clone());
                true
            }
            None => false,
        }
    }

    /// Kafka's `initNextGeneration`.
    fn init_next_generation(&mut self) {
        self.generation_id += 1;
        if self.members.is_empty() {
            self.protocol_name = None;
            self.state = GroupState::Empty;
        } else {
            self.protocol_name = self.select_protocol();
            self.state = GroupState::CompletingRebalance;
        }
    }

    /// The JoinGroup response for the current generation; only the leader sees the members.
    fn current_generation_response(&self, member_id: &str, is_leader: bool) -> JoinResponse {
        let protocol_name = self.protocol_name.clone().unwrap_or_default();
        let members = if is_leader {
            self.members
                .values()
                .map(|member| JoinResponseMember {
                    member_id: member.member_id.clone(),
                    group_instance_id: member.group_instance_id.clone(),
                    metadata: member.metadata(&protocol_name),
                })
                .collect()
        } else {
            Vec::new()
        };
        JoinResponse {
            error_code: NONE,
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader_id.clone().unwrap_or_default(),
            member_id: member_id.to_owned(),
            members,
        }
    }

    fn sync_response(&self, assignment: Bytes) -> SyncResponse {
        SyncResponse {
            error_code: NONE,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            assignment,
        }
    }

    /// Kafka's `setAndPropagateAssignment`: members the leader left out get an empty
    /// assignment, entries for unknown members are ignored, and every parked SyncGroup is
    /// answered.
    fn set_and_propagate_assignment(
        &mut self,
        assignments: &[(String, Bytes)],
        now_ms: i64,
        effects: &mut Vec<Effect>,
    ) {
        let assignments: BTreeMap<&str, &Bytes> = assignments
            .iter()
            .map(|(member_id, assignment)| (member_id.as_str(), assignment))
            .collect();
        for member in self.members.values_mut() {
            member.assignment = assignments
                .get(member.member_id.as_str())
                .map(|assignment| (*assignment).clone())
                .unwrap_or_default();
        }
        let waiting: Vec<(String, Bytes)> = self
            .members
            .values()
            .filter(|member| member.awaiting_sync)
            .map(|member| (member.member_id.clone(), member.assignment.clone()))
            .collect();
        for (member_id, assignment) in waiting {
            let response = self.sync_response(assignment);
            if let Some(member) = self.members.get_mut(&member_id) {
                member.awaiting_sync = false;
                member.last_heartbeat_ms = now_ms;
            }
            effects.push(Effect::SyncResponse {
                member_id,
                response,
            });
        }
    }

    /// Kafka's `resetAndPropagateAssignmentError`.
    fn reset_and_propagate_assignment_error(&mut self, error_code: i16, effects: &mut Vec<Effect>) {
        for member in self.members.values_mut() {
            member.assignment = Bytes::new();
            if member.awaiting_sync {
                member.awaiting_sync = false;
                effects.push(Effect::SyncResponse {
                    member_id: member.member_id.clone(),
                    response: SyncResponse::error(error_code),
                });
            }
        }
    }
}

#[cfg(test)]
#[path = "membership_test.rs"]
mod tests;

//! PREMIS 3 XML (Library of Congress, namespace http://www.loc.gov/premis/v3) for audit-log
//! events. The schema requires at least one `object` before the events, and agents after
//! them, so a document lists the objects the events are about, the events, then the agents.

use archipel_proto::event::Event;
use std::collections::BTreeSet;

pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

pub const HEADER: &str = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<premis:premis xmlns:premis=\"http://www.loc.gov/premis/v3\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" version=\"3.0\">\n";
pub const FOOTER: &str = "</premis:premis>\n";

/// An intellectual entity: a record, or whatever else an event names (a peer, `node`).
pub fn object(id: &str) -> String {
    format!(
        "  <premis:object xsi:type=\"premis:intellectualEntity\">
    <premis:objectIdentifier>
      <premis:objectIdentifierType>archipel-object</premis:objectIdentifierType>
      <premis:objectIdentifierValue>{}</premis:objectIdentifierValue>
    </premis:objectIdentifier>
  </premis:object>
",
        xml_escape(id)
    )
}

fn agent_id(e: &Event) -> String {
    format!("{}/{}", e.agent_node, e.agent_actor)
}

/// One event; `origin` and `index` identify it in the node's log for ever.
pub fn event(origin: &str, index: u64, e: &Event) -> String {
    format!(
        "  <premis:event>
    <premis:eventIdentifier>
      <premis:eventIdentifierType>archipel-log</premis:eventIdentifierType>
      <premis:eventIdentifierValue>{origin}#{index}</premis:eventIdentifierValue>
    </premis:eventIdentifier>
    <premis:eventType>{ty}</premis:eventType>
    <premis:eventDateTime>{time}</premis:eventDateTime>
    <premis:eventDetailInformation>
      <premis:eventDetail>detail commitment blake3:{detail}</premis:eventDetail>
    </premis:eventDetailInformation>
    <premis:eventOutcomeInformation>
      <premis:eventOutcome>{outcome}</premis:eventOutcome>
    </premis:eventOutcomeInformation>
    <premis:linkingAgentIdentifier>
      <premis:linkingAgentIdentifierType>archipel-node</premis:linkingAgentIdentifierType>
      <premis:linkingAgentIdentifierValue>{agent}</premis:linkingAgentIdentifierValue>
      <premis:linkingAgentRole>executing program</premis:linkingAgentRole>
    </premis:linkingAgentIdentifier>
    <premis:linkingObjectIdentifier>
      <premis:linkingObjectIdentifierType>archipel-object</premis:linkingObjectIdentifierType>
      <premis:linkingObjectIdentifierValue>{object}</premis:linkingObjectIdentifierValue>
    </premis:linkingObjectIdentifier>
  </premis:event>
",
        origin = xml_escape(origin),
        ty = xml_escape(&e.event_type),
        time = xml_escape(&e.time),
        detail = hex::encode(e.detail),
        outcome = e.outcome.as_str(),
        agent = xml_escape(&agent_id(e)),
        object = xml_escape(&e.object),
    )
}

/// The node service that acted (a node ID and the actor on it).
pub fn agent(id: &str) -> String {
    format!(
        "  <premis:agent>
    <premis:agentIdentifier>
      <premis:agentIdentifierType>archipel-node</premis:agentIdentifierType>
      <premis:agentIdentifierValue>{}</premis:agentIdentifierValue>
    </premis:agentIdentifier>
    <premis:agentType>software</premis:agentType>
  </premis:agent>
",
        xml_escape(id)
    )
}

/// A whole document: `objects` (at least one, as the schema wants), then the events and the
/// agents they name.
pub fn document(origin: &str, objects: &[String], events: &[(u64, Event)]) -> String {
    let mut out = String::from(HEADER);
    let mut seen = BTreeSet::new();
    for o in objects {
        if seen.insert(o.as_str()) {
            out.push_str(&object(o));
        }
    }
    for (_, e) in events {
        if seen.insert(e.object.as_str()) {
            // An event about an object not listed: list it too, so every link resolves.
            out.push_str(&object(&e.object));
        }
    }
    for (i, e) in events {
        out.push_str(&event(origin, *i, e));
    }
    let agents: BTreeSet<String> = events.iter().map(|(_, e)| agent_id(e)).collect();
    for a in &agents {
        out.push_str(&agent(a));
    }
    out.push_str(FOOTER);
    out
}

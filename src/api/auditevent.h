/* api/auditevent — the audit trail as FHIR R4 AuditEvent resources (jansson).
 *
 * Renders one struct vg_audit_record (src/audit/audit.h) as an AuditEvent,
 * and a list of them as a Bundle of type "collection", for export to a SIEM
 * or an EHR's audit repository (security.md #19). Pure functions: nothing
 * here touches the store, the clock or the network.
 *
 * Every resource validates against the official FHIR R4 (4.0.1) JSON schema
 * (tests/data/fhir/fhir-r4-subset.schema.json, checked by
 * tests/integration/validate_fhir.py). Strings taken from the record are
 * made valid FHIR strings first: bytes that are not UTF-8, and control
 * characters other than TAB, CR and LF, become U+FFFD.
 *
 * ## Element mapping (record field -> AuditEvent element)
 *
 *   seq      id = "<seq>"; entity[0].detail {type "seq"} = "<seq>", so a
 *            record's position in the hash chain survives the export
 *   ts_ms    recorded = RFC 3339 instant, milliseconds, "Z"
 *   action   type (DICOM, table below); subtype[0] = urn:vigil:audit-action
 *            | <action>, then the DICOM or FHIR sub-type of the table;
 *            action = C/R/U/D/E (table below)
 *   outcome  outcome, value set http://hl7.org/fhir/audit-event-outcome:
 *              "success"            -> "0" Success
 *              "refused", "denied"  -> "4" Minor failure ("often equivalent
 *                                      to an HTTP 400 response")
 *              "failure", anything else -> "8" Serious failure
 *            and, when not "success", entity[0].detail {type "outcome"} =
 *            the record's word (refused and denied both map to "4")
 *   detail   outcomeDesc when the outcome is not "success"; otherwise
 *            entity[0].detail {type "detail"} (omitted when empty)
 *   actor    agent[0].who.identifier = urn:vigil:principal | <actor>;
 *            agent[0].type: "user:*" -> extra-security-role-type humanuser,
 *            "device:*" and "system" -> DCM 110150 "Application";
 *            agent[0].requestor = true for user, device and peer actors (they
 *            start what they are audited for; a "peer" is the unauthenticated
 *            client of a TLS handshake), false for "system"
 *   source   agent[0].network = {address: the host part, type "2" IP address
 *            (or "1" machine name when the host is not an IP literal)}:
 *            "127.0.0.1:5555" -> "127.0.0.1", "[::1]:5" -> "::1"; none when
 *            empty or malformed. The whole "IP:port" is also kept in
 *            entity[0].detail {type "source"}.
 *   target   entity[0].what:
 *              "patient:P1" -> reference "Patient/P1" (identifier
 *                              urn:vigil:patient | P1 when P1 is not a valid
 *                              FHIR id), type 1 Person, role 1 Patient
 *              "device:d1"  -> identifier urn:vigil:device | d1,
 *                              type 2 System Object
 *              "user:alice" -> identifier urn:vigil:principal | user:alice,
 *                              type 1 Person, role 11 Security User Entity
 *              other        -> identifier urn:vigil:target | <target>,
 *                              type 4 Other
 *              ""           -> entity[0] has no 'what', only its details
 *   observer source.observer.display (NULL or "" -> "vigil"); source.type =
 *            security-source-type 4 "Application Server"
 *
 * ## Action mapping
 *
 * type is from DICOM PS3.16 CID 400 "Audit Event ID" (system
 * http://dicom.nema.org/resources/ontology/DCM). The DICOM sub-types are
 * CID 401 "Audit Event Type Code" / CID 403 codes, which DICOM defines as
 * the EventTypeCode under a CID 400 EventID: "Security Roles Changed"
 * (110136) and "User Security Attributes Changed" (110137) are sub-types of
 * 110113 "Security Alert", not types of their own. FHIR's search-type is
 * http://hl7.org/fhir/restful-interaction, which R4's audit-event-sub-type
 * value set includes.
 *
 *   action            type                            sub-type (besides the vigil code)     act
 *   ----------------- ------------------------------- ------------------------------------- ---
 *   vigil.init        110100 "Application Activity"   -                                      C
 *   vigil.start       110100 "Application Activity"   110120 "Application Start"             E
 *   vigil.stop        110100 "Application Activity"   110121 "Application Stop"              E
 *   api.auth          110114 "User Authentication"    110122 "Login"                         E
 *   user.login        110114 "User Authentication"    110122 "Login"                         E
 *   user.logout       110114 "User Authentication"    110123 "Logout"                        E
 *   session.expire    110114 "User Authentication"    110123 "Logout"                        E
 *   tls.handshake     110114 "User Authentication"    110126 "Node Authentication"           E
 *   mqtt.connect      110114 "User Authentication"    110122 "Login"                         E
 *   mqtt.disconnect   110114 "User Authentication"    110123 "Logout"                        E
 *   mqtt.takeover     110114 "User Authentication"    110123 "Logout"                        E
 *   mqtt.publish      110110 "Patient Record"         -                                      C
 *   mqtt.subscribe    110112 "Query"                  -                                      E
 *   patient.create    110110 "Patient Record"         -                                      C
 *   patient.erase     110110 "Patient Record"         -                                      D
 *   device.assign     110110 "Patient Record"         -                                      U
 *   readings.store    110110 "Patient Record"         -                                      C
 *   readings.refuse   110110 "Patient Record"         -                                      C
 *   obs.read          110110 "Patient Record"         restful-interaction search-type        R
 *   obs.subscribe     110110 "Patient Record"         -                                      R
 *   obs.breakglass    110110 "Patient Record"         -                                      R
 *   obs.export        110106 "Export"                 -                                      R
 *   principal.create  110113 "Security Alert"         110137 "User Security Attributes Changed" C
 *   user.create       110113 "Security Alert"         110137 "User Security Attributes Changed" C
 *   device.enroll     110113 "Security Alert"         110137 "User Security Attributes Changed" C
 *   user.disable      110113 "Security Alert"         110137 "User Security Attributes Changed" U
 *   device.quarantine 110113 "Security Alert"         110137 "User Security Attributes Changed" U
 *   device.revoke     110113 "Security Alert"         110137 "User Security Attributes Changed" U
 *   user.role         110113 "Security Alert"         110136 "Security Roles Changed"        U
 *   careteam.assign   110113 "Security Alert"         110136 "Security Roles Changed"        U
 *   breakglass.open   110113 "Security Alert"         110127 "Emergency Override Started"    E
 *   keys.rotate       110113 "Security Alert"         110129 "Security Configuration"        E
 *   finding.suppress  110113 "Security Alert"         110129 "Security Configuration"        U
 *   alert.raised      110113 "Security Alert"         -                                      E
 *   audit.checkpoint  110101 "Audit Log Used"         -                                      E
 *   audit.ship        110101 "Audit Log Used"         -                                      R
 *
 * Any other action is mapped by its prefix (the text up to and including
 * its first '.'), and its letter by its last dotted word:
 *
 *   prefix                                type    sub-type
 *   obs. readings. patient.               110110  -
 *   api. session. mqtt.                   110114  -
 *   tls.                                  110114  110126
 *   user. principal.                      110113  110137
 *   careteam.                             110113  110136
 *   keys.                                 110113  110129
 *   device. alert. finding. breakglass.   110113  -
 *   audit.                                110101  -
 *   vigil. and anything else              110100  -
 *
 *   C create add enroll store import register issue
 *   R read list get search query export view subscribe
 *   U update assign unassign set role disable enable suppress quarantine
 *     revoke rename change modify
 *   D delete erase remove purge destroy
 *   E anything else ("perform a system or application function")
 *
 * Why: 110110 "Patient Record" is DICOM's event for a patient record being
 * created, read, updated or deleted, which is what every reading, refusal,
 * assignment and read of observations is; it is also what an accounting of
 * disclosures filters on. 110114 covers both people and devices proving who
 * they are (bearer token, MQTT CONNECT with a client certificate; a failed
 * TLS handshake is the node-authentication attempt that DICOM's 110126
 * names). Changes to who may act — principals, roles, care teams,
 * credentials, key rotation, quarantine — are 110113 "Security Alert" with
 * the CID 401 code that names the change. obs.export sends patient data out
 * of the system: DICOM's 110106 "Export". audit.* read or attest the audit
 * log itself: 110101 "Audit Log Used".
 */
#ifndef VG_API_AUDITEVENT_H
#define VG_API_AUDITEVENT_H

#include <jansson.h>

#include "audit/audit.h"

/* One AuditEvent for record 'r' (borrowed; NULL strings read as "").
 * 'observer' is the gateway's name (e.g. the host name), borrowed.
 * Returns a new reference owned by the caller, or NULL when out of memory
 * or when ts_ms lies outside 1970-01-01 .. 9999-12-31 (FHIR's instant
 * cannot carry it). */
json_t *vg_fhir_audit_event(const struct vg_audit_record *r, const char *observer);

/* A Bundle of type "collection" around 'events' (an array of AuditEvent
 * resources; the reference is stolen, also on failure). Each entry's
 * fullUrl is base_url + "/fhir/AuditEvent/<id>" (a trailing '/' of base_url
 * is dropped; it must be an absolute URL without whitespace), or a random
 * "urn:uuid:" when base_url is NULL or "" or the resource has no id. An
 * empty array gives a Bundle without 'entry' (FHIR arrays are never empty).
 * Returns a new reference, or NULL when out of memory, when 'events' is not
 * an array, or when the system has no randomness. */
json_t *vg_fhir_audit_bundle(json_t *events, const char *base_url);

#endif

-- A call's route evidence names the inference-log row written with it, in the same transaction.
ALTER TABLE route_evidence ADD COLUMN request_id TEXT;
CREATE INDEX route_evidence_request ON route_evidence (request_id);

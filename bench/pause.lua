-- wrk script: POST a realistic pause request (one email reviewer, a resume URL, context).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer bench-key"
wrk.body = [[{"flow": "bench", "title": "Update CRM record for ACME Corp",
"summary": "The assistant proposes moving the deal to negotiation and assigning it to Bob.",
"action": {"record_id": "0061x00000ABCDe", "stage": "Negotiation", "owner": "bob@example.com",
"amount": 48250.0, "note": "Customer asked for a revised quote including onboarding."},
"context": {"source": "email", "thread": "Re: Quote for 2027", "confidence": 0.82,
"previous_stage": "Proposal"}, "risk": {"amount": 48250.0, "confidence": 0.82},
"resume": {"url": "http://127.0.0.1:9/never-called"}, "requested_by": "crm-assistant"}]]

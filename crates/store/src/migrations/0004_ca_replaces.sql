-- ARI (RFC 9773 §5): the certID an order said it replaces, kept with its certificate.
ALTER TABLE ca_certificates ADD COLUMN replaces TEXT

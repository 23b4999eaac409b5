//! OCPP 2.0.1-J wire protocol.

//! portcullis-auth

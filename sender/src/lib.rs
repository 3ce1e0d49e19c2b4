//! The sender: takes rendered messages from the notification database's queue and hands them
//! to SendGrid (email) or Twilio (SMS), recording every attempt. A message is marked `sending`
//! before its provider call, so a call whose end is unknown leaves it `in_doubt`, never resent.

pub mod circuit;
pub mod metrics;
pub mod provider;
pub mod settle;
pub mod unsubscribe;
pub mod webhooks;
pub mod worker;

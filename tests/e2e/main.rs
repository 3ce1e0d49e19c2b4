//! End-to-end scenarios: change-detector → Kafka → renderer → queue → sender → provider,
//! with a real database engine, a real Kafka-protocol broker and real HTTP. Each scenario is
//! written once, generic over the engine, and runs on PostgreSQL always and on SQL Server
//! when `HERALD_TEST_MSSQL` is set (otherwise it is ignored, with the reason). Each test
//! builds its own `Stack` (fresh databases, topic, group and fake provider), so tests run in
//! parallel.

mod accounts;
mod bad_input;
mod broker_outage;
mod crash;
mod delivery;
mod exact;
mod observe;
mod operate;
mod pipeline;
mod replay;
mod schedules;
mod status_page;
mod tenants;
mod unsubscribe;
mod webhooks;

/// One `#[tokio::test]` per scenario and engine: `postgres::name` and `mssql::name`.
macro_rules! on_every_engine {
    ($($module:ident::$name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test]
                async fn $name() -> anyhow::Result<()> {
                    crate::$module::$name(herald_tests::Engine::Postgres).await
                }
            )*
        }
        mod mssql {
            $(
                #[tokio::test]
                #[cfg_attr(
                    not(mssql_tests),
                    ignore = "needs SQL Server: set HERALD_TEST_MSSQL=host:port and HERALD_TEST_MSSQL_PASSWORD"
                )]
                async fn $name() -> anyhow::Result<()> {
                    crate::$module::$name(herald_tests::Engine::Mssql).await
                }
            )*
        }
    };
}

/// Scenarios about PostgreSQL itself (its standbys): `postgres::name` only.
macro_rules! on_postgres {
    ($($module:ident::$name:ident),* $(,)?) => {
        mod postgres_only {
            $(
                #[tokio::test]
                async fn $name() -> anyhow::Result<()> {
                    crate::$module::$name().await
                }
            )*
        }
    };
}

on_every_engine! {
    pipeline::inserts_and_updates_each_become_exactly_one_message,
    pipeline::three_renderers_queue_each_notification_once,
    pipeline::keys_that_differ_only_in_case_are_two_notifications,
    replay::an_event_delivered_twice_is_queued_and_sent_once,
    crash::detector_killed_mid_stream_misses_and_repeats_nothing,
    crash::renderer_killed_mid_stream_misses_and_repeats_nothing,
    crash::sender_killed_mid_stream_misses_and_repeats_nothing,
    crash::unnamed_senders_never_settle_each_others_calls,
    crash::a_renderer_killed_around_rebalances_owns_every_partition_again,
    schedules::a_table_with_only_an_inactive_schedule_is_never_queried,
    schedules::broken_schedules_are_reported_and_do_not_stop_a_healthy_one,
    schedules::schedules_added_and_deactivated_apply_without_a_restart,
    schedules::a_schedule_switched_to_another_change_column_starts_afresh,
    delivery::a_rate_limited_email_is_sent_once_after_the_reset,
    delivery::a_rate_limit_pauses_its_provider_until_the_reset_and_not_the_other,
    delivery::a_refused_email_fails_with_the_providers_reason_and_is_not_retried,
    delivery::merge_values_are_escaped_in_html_and_intact_in_text_and_sms,
    delivery::a_refused_key_pauses_email_and_spends_no_attempts,
    delivery::gateway_errors_and_lost_answers_are_in_doubt_not_resent,
    delivery::an_in_doubt_sms_twilio_lists_is_settled_and_one_it_lacks_waits,
    delivery::a_recipient_who_replied_stop_is_suppressed,
    webhooks::sendgrid_events_settle_doubt_suppress_bounces_and_forgeries_change_nothing,
    webhooks::a_sender_killed_in_its_calls_leaves_nothing_in_doubt_that_sendgrid_has,
    webhooks::twilio_callbacks_settle_doubt_and_a_stop_suppresses,
    webhooks::reported_bounces_drops_complaints_and_stops_suppress_their_addresses,
    unsubscribe::one_click_unsubscribes_from_the_schedule_or_the_tenant_and_a_forged_link_does_nothing,
    delivery::names_and_settings_reach_the_provider_in_the_form_it_accepts,
    bad_input::bad_input_is_recorded_with_its_reason_and_the_rest_flows,
    bad_input::every_service_stops_cleanly_on_sigterm,
    bad_input::hostile_payloads_are_kept_as_they_were_and_real_changes_flow,
    bad_input::a_hanging_merge_function_delays_only_its_own_message,
    bad_input::a_merge_function_changed_under_the_renderer_is_a_recorded_failure,
    broker_outage::the_mark_waits_for_kafka_to_acknowledge,
    exact::late_commits_and_a_long_import_are_each_notified_once,
    observe::metrics_match_the_database_and_the_broker,
    observe::readiness_names_the_dependency_that_does_not_answer,
    operate::schedules_show_their_state_and_pause_and_resume,
    operate::in_doubt_messages_are_listed_and_settled_once,
    operate::trace_by_recipient_finds_the_whole_chain,
    status_page::the_status_page_shows_what_the_database_holds,
    tenants::a_tenants_flood_does_not_hold_up_another_tenants_messages,
    tenants::a_claim_takes_every_tenants_first_message_before_anyones_second,
    tenants::a_slow_merge_function_holds_up_only_its_own_schedule,
    accounts::a_tenants_revoked_key_pauses_only_that_tenant,
    accounts::a_tenants_rate_limit_pauses_only_its_account,
    accounts::a_tenants_send_limit_holds_across_two_senders,
    accounts::send_limits_cap_each_claim_per_tenant_and_per_account,
    accounts::an_accounts_reports_count_only_for_its_own_messages,
}

on_postgres! {
    exact::a_standby_3s_behind_misses_and_doubles_nothing,
    exact::replay_paused_for_20s_misses_and_doubles_nothing,
    exact::an_idle_source_does_not_hold_back_committed_rows,
    exact::savepoints_rollbacks_freezing_and_a_killed_detector_inside_a_held_window,
    exact::a_change_breaking_the_write_delay_is_swept_late_and_audited,
    exact::a_renderer_on_a_replica_behind_the_event_waits_for_it,
    tenants::a_locked_table_holds_back_only_its_own_schedule,
    schedules::a_name_with_a_newline_is_read_as_a_name,
}

"""Which test shows each setting to have its effect. docs/settings.md is generated from this,
and tests/test_settings_doc.py checks that every declared setting is listed here and that each
named test exists. A value starting with "pending:" says why no single-process test can exist.
"""

D = "tests/test_data.py::"
T = "tests/test_training.py::"
M = "tests/test_model_settings.py::"
O = "tests/test_optimization_and_generation.py::"  # noqa: E741
C = "tests/test_config.py::"
X = "tests/test_more_settings.py::"
J = "tests/test_judge.py::"
L = "tests/test_loggers.py::"
CLI = "tests/test_cli.py::"
DIST = "tests/test_distributed.py::"

COVERAGE = {
    "problem_type": CLI + "test_unknown_problem_type_is_refused",
    "experiment_name": L + "test_neptune_offline_logs_config_and_charts_without_the_token",
    "llm_backbone": "tests/test_smollm2.py::test_smollm2_fine_tunes_and_chats",
    "output_directory": CLI + "test_guide_yaml_trains_and_fills_the_experiment_folder",
    "dataset.train_dataframe": D + "test_read_dataframe_reads_every_supported_format",
    "dataset.validation_strategy": D + "test_custom_strategy_uses_the_validation_file",
    "dataset.validation_dataframe": D + "test_custom_strategy_uses_the_validation_file",
    "dataset.validation_size": D + "test_validation_size_scales_the_validation_set",
    "dataset.data_sample": D + "test_data_sample_halves_train_and_validation",
    "dataset.data_sample_choice": D + "test_data_sample_spares_validation_when_not_chosen",
    "dataset.system_column": D + "test_parent_chains_build_growing_conversations",
    "dataset.prompt_column": D + "test_several_prompt_columns_are_joined_with_the_separator",
    "dataset.prompt_column_separator": D
    + "test_several_prompt_columns_are_joined_with_the_separator",
    "dataset.answer_column": D + "test_missing_answer_column_names_column_and_setting",
    "dataset.num_classes": "tests/test_classification.py::"
    + "test_num_classes_is_inferred_and_an_override_sizes_the_head",
    "dataset.parent_id_column": D + "test_parent_chains_build_growing_conversations",
    "dataset.text_system_start": D + "test_format_texts_appear_in_the_encoded_sample",
    "dataset.text_prompt_start": D + "test_format_texts_appear_in_the_encoded_sample",
    "dataset.text_answer_separator": D + "test_format_texts_appear_in_the_encoded_sample",
    "dataset.add_eos_token_to_system": D + "test_each_eos_flag_adds_one_eos_in_its_place",
    "dataset.add_eos_token_to_prompt": D + "test_each_eos_flag_adds_one_eos_in_its_place",
    "dataset.add_eos_token_to_answer": D + "test_each_eos_flag_adds_one_eos_in_its_place",
    "dataset.mask_prompt_labels": D + "test_unmasked_labels_cover_every_token",
    "dataset.rejected_prompt_column": "tests/test_dpo.py::"
    + "test_rejected_prompt_column_is_the_rejected_sides_prompt",
    "dataset.rejected_answer_column": "tests/test_dpo.py::"
    + "test_missing_rejected_answer_column_is_a_clean_data_error",
    "dataset.limit_chained_samples": X
    + "test_limit_chained_samples_keeps_only_whole_conversations",
    "dataset.personalize": X + "test_personalize_renames_the_assistant_and_adds_identity_turns",
    "dataset.chatbot_name": X + "test_personalize_renames_the_assistant_and_adds_identity_turns",
    "dataset.chatbot_author": X + "test_personalize_renames_the_assistant_and_adds_identity_turns",
    "tokenizer.max_length": D
    + "test_too_long_sample_keeps_the_answer_and_cuts_the_prompt_on_the_left",
    "tokenizer.add_prompt_answer_tokens": X
    + "test_add_prompt_answer_tokens_makes_single_tokens_and_grows_the_embeddings",
    "tokenizer.padding_quantile": D + "test_quantile_half_cuts_to_the_median_keeping_the_end",
    "architecture.backbone_dtype": X
    + "test_quantized_backbone_trains_lora_and_saves_a_plain_float_model",
    "architecture.gradient_checkpointing": M + "test_gradient_checkpointing_recomputes_activations",
    "architecture.intermediate_dropout": M
    + "test_intermediate_dropout_is_set_and_active_only_in_training",
    "architecture.pretrained": M + "test_pretrained_loads_the_saved_weights_and_false_does_not",
    "architecture.pretrained_weights": X
    + "test_pretrained_weights_starts_from_a_previous_experiment",
    "training.loss_function": O
    + "test_token_and_sample_averaged_losses_weigh_short_answers_differently",
    "training.optimizer": O
    + "test_different_optimizers_take_different_steps_from_the_same_gradient",
    "training.learning_rate": O + "test_learning_rate_is_the_rate_a_constant_run_uses",
    "training.differential_learning_rate_layers": O
    + "test_differential_learning_rate_layers_get_their_own_rate",
    "training.differential_learning_rate": O
    + "test_differential_learning_rate_layers_get_their_own_rate",
    "training.freeze_layers": M + "test_freeze_layers_without_lora_freezes_matching_weights",
    "training.attention_implementation": M + "test_attention_implementation_is_used_by_the_model",
    "training.batch_size": T + "test_batch_size_epochs_and_drop_last_set_the_number_of_steps",
    "training.drop_last_batch": T + "test_batch_size_epochs_and_drop_last_set_the_number_of_steps",
    "training.length_grouped_batches": "tests/test_throughput.py::"
    + "test_length_grouped_batches_are_seeded_resumable_and_pad_less",
    "training.sample_packing": "tests/test_throughput.py::"
    + "test_packed_loss_and_gradients_equal_the_padded_batch",
    "training.epochs": T + "test_epochs_zero_evaluates_the_backbone_as_it_is",
    "training.schedule": O + "test_cosine_schedule_follows_half_a_cosine",
    "training.warmup_epochs": O
    + "test_fractional_warmup_epochs_ramp_up_over_that_share_of_an_epoch",
    "training.weight_decay": O + "test_weight_decay_shrinks_weights_without_any_gradient",
    "training.gradient_clip": O + "test_gradient_clip_limits_the_gradient_norm_of_an_update",
    "training.grad_accumulation": T + "test_grad_accumulation_updates_every_k_batches",
    "training.lora": M + "test_lora_trains_a_small_share_and_lora_off_trains_everything",
    "training.use_dora": M + "test_use_dora_adds_magnitude_vectors",
    "training.lora_r": M + "test_lora_r_sets_the_adapter_rank",
    "training.lora_alpha": M + "test_lora_alpha_sets_the_adapter_scaling",
    "training.lora_dropout": M + "test_lora_dropout_sets_the_adapter_dropout",
    "training.lora_target_modules": M + "test_lora_target_modules_picks_the_adapted_layers",
    "training.lora_unfreeze_layers": M + "test_lora_unfreeze_layers_trains_those_layers_fully",
    "training.save_checkpoint": X + "test_best_checkpoint_is_the_weights_of_the_best_validation",
    "training.evaluation_epochs": T + "test_guide_run_writes_status_charts_and_insights",
    "training.evaluate_before_training": X
    + "test_evaluate_before_training_adds_a_validation_at_step_zero",
    "training.train_validation_data": T + "test_train_validation_data_trains_on_both",
    "training.beta": "tests/test_dpo.py::test_beta_and_simpo_gamma_settings_reach_the_loss",
    "training.simpo_gamma": "tests/test_dpo.py::test_beta_and_simpo_gamma_settings_reach_the_loss",
    "augmentation.token_mask_probability": D
    + "test_mask_tokens_replaces_about_half_of_the_real_tokens",
    "augmentation.skip_parent_probability": X
    + "test_skip_parent_probability_half_mixes_lengths_and_is_seeded",
    "augmentation.random_parent_probability": X
    + "test_random_parent_probability_prefixes_another_samples_turn",
    "augmentation.neftune_noise_alpha": M + "test_neftune_noise_only_in_training_and_removable",
    "prediction.metric": T + "test_perplexity_metric_is_exp_of_each_rows_loss",
    "prediction.metric_gpt_model": J
    + "test_scores_are_the_servers_and_requests_carry_model_question_reference_answer",
    "prediction.metric_gpt_template": J + "test_mt_bench_template_shows_category_and_earlier_turns",
    "prediction.min_length_inference": O + "test_min_length_inference_holds_off_the_end_of_text",
    "prediction.max_length_inference": O + "test_max_length_inference_caps_the_new_tokens",
    "prediction.batch_size_inference": O + "test_batch_size_inference_sets_the_generation_batches",
    "prediction.do_sample": O + "test_do_sample_varies_with_the_seed_and_greedy_does_not",
    "prediction.num_beams": O + "test_num_beams_searches_for_likelier_answers",
    "prediction.temperature": O + "test_low_temperature_samples_the_greedy_answer",
    "prediction.repetition_penalty": O + "test_repetition_penalty_discourages_repeated_tokens",
    "prediction.stop_tokens": O + "test_stop_tokens_end_the_answer_before_the_stop_text",
    "prediction.top_k": O + "test_top_k_one_or_tiny_top_p_sample_the_greedy_answer",
    "prediction.top_p": O + "test_top_k_one_or_tiny_top_p_sample_the_greedy_answer",
    "prediction.num_history": "tests/test_chat.py::test_num_history_limits_the_turns_the_model_sees",
    "environment.gpus": CLI + "test_more_gpus_than_exist_is_refused",
    "environment.mixed_precision": T + "test_cpu_run_uses_float32_and_says_why",
    "environment.compile_model": X + "test_compile_model_compiles_and_saves_clean_keys",
    "environment.find_unused_parameters": DIST
    + "test_a_classifier_without_lora_needs_find_unused_parameters_under_ddp_only",
    "environment.data_parallel_engine": DIST
    + "test_fsdp_full_fine_tuning_stops_resumes_and_saves_the_weights_of_one_process",
    "environment.fsdp_sharding": DIST
    + "test_fsdp_full_fine_tuning_stops_resumes_and_saves_the_weights_of_one_process",
    "environment.deepspeed_zero_stage": DIST
    + "test_deepspeed_zero3_full_fine_tuning_stops_resumes_and_saves_the_weights_of_one_process",
    "environment.use_fsdp": DIST
    + "test_fsdp_with_lora_trains_the_weights_of_ddp_and_saves_one_whole_checkpoint",
    "environment.trust_remote_code": M + "test_trust_remote_code_allows_the_backbones_own_code",
    "environment.huggingface_branch": M + "test_huggingface_branch_picks_the_revision",
    "environment.number_of_workers": M
    + "test_number_of_workers_loads_in_worker_processes_with_the_same_batches",
    "environment.seed": T + "test_fixed_seed_repeats_the_loss_curve_and_minus_one_draws_a_seed",
    "logging.logger": L + "test_tensorboard_event_files_hold_every_chart_point",
    "logging.neptune_project": L + "test_neptune_without_a_project_names_the_setting",
}

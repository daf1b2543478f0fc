# Athena over the runs and the raw tables: a Glue database, one table per
# output table (partitioned by run_id, with partition projection, so a new run
# needs no catalog update), one per raw table (raw_<name>), the published run id
# as a table (current_run), and a workgroup. The queries are in
# docs/analysts.md. scripts/infra_tests checks every column against the table
# contract (`faverecs tables --json`), so they cannot drift.

locals {
  # Columns of each run table, in the contract's order and Glue types.
  run_tables = {
    photos = [
      { name = "photo_id", type = "string" },
      { name = "owner_id", type = "string" },
      { name = "owner_name", type = "string" },
      { name = "title", type = "string" },
      { name = "server", type = "string" },
      { name = "secret", type = "string" },
      { name = "tags", type = "string" },
      { name = "date_upload", type = "timestamp" },
    ]
    tracked_users = [
      { name = "user_id", type = "string" },
      { name = "username", type = "string" },
      { name = "added_at", type = "timestamp" },
    ]
    photo_recs = [
      { name = "user_id", type = "string" },
      { name = "rank", type = "int" },
      { name = "photo_id", type = "string" },
      { name = "owner_id", type = "string" },
      { name = "score", type = "double" },
      { name = "neighbor_count", type = "int" },
      { name = "top_neighbors", type = "array<string>" },
      { name = "similar_to", type = "array<string>" },
      { name = "algorithm", type = "string" },
      { name = "fallback", type = "boolean" },
    ]
    photographer_recs = [
      { name = "user_id", type = "string" },
      { name = "rank", type = "int" },
      { name = "photographer_id", type = "string" },
      { name = "score", type = "double" },
      { name = "common_favorites", type = "bigint" },
      { name = "total_favorites", type = "bigint" },
    ]
    first_recommended = [
      { name = "user_id", type = "string" },
      { name = "photo_id", type = "string" },
      { name = "first_recommended_at", type = "timestamp" },
      { name = "first_run_id", type = "string" },
    ]
    similar_photos = [
      { name = "photo_id", type = "string" },
      { name = "rank", type = "int" },
      { name = "similar_photo_id", type = "string" },
      { name = "score", type = "double" },
      { name = "common_favorites", type = "bigint" },
      { name = "algorithm", type = "string" },
    ]
    tag_photos = [
      { name = "tag", type = "string" },
      { name = "rank", type = "int" },
      { name = "photo_id", type = "string" },
      { name = "favorites", type = "bigint" },
    ]
    metrics = [
      { name = "algorithm", type = "string" },
      { name = "k", type = "int" },
      { name = "users_evaluated", type = "bigint" },
      { name = "precision", type = "double" },
      { name = "recall", type = "double" },
      { name = "ndcg", type = "double" },
      { name = "map", type = "double" },
      { name = "hit_rate", type = "double" },
      { name = "coverage", type = "double" },
      { name = "split", type = "string" },
    ]
  }

  # Columns of each raw table.
  raw_tables = {
    favorites = [
      { name = "user_id", type = "string" },
      { name = "photo_id", type = "string" },
      { name = "owner_id", type = "string" },
      { name = "date_faved", type = "timestamp" },
    ]
    photos = [
      { name = "photo_id", type = "string" },
      { name = "owner_id", type = "string" },
      { name = "owner_name", type = "string" },
      { name = "title", type = "string" },
      { name = "server", type = "string" },
      { name = "secret", type = "string" },
      { name = "tags", type = "string" },
      { name = "date_upload", type = "timestamp" },
    ]
    contacts = [
      { name = "user_id", type = "string" },
      { name = "contact_id", type = "string" },
    ]
    tracked_users = [
      { name = "user_id", type = "string" },
      { name = "username", type = "string" },
      { name = "added_at", type = "timestamp" },
    ]
    dismissals = [
      { name = "user_id", type = "string" },
      { name = "photo_id", type = "string" },
      { name = "dismissed_user_id", type = "string" },
    ]
    extract_state = [
      { name = "user_id", type = "string" },
      { name = "last_pulled_at", type = "timestamp" },
      { name = "last_full_pull_at", type = "timestamp" },
      { name = "newest_date_faved", type = "timestamp" },
      { name = "outcome", type = "string" },
      { name = "next_attempt_at", type = "timestamp" },
      { name = "favorites_total", type = "bigint" },
      { name = "refresh_hours", type = "double" },
    ]
  }

  data_location = "s3://${aws_s3_bucket.data.bucket}/${var.storage_prefix}"
}

resource "aws_glue_catalog_database" "faverecs" {
  name        = replace(var.name, "-", "_")
  description = "faverecs runs and raw tables (docs/analysts.md)"
}

resource "aws_glue_catalog_table" "run" {
  for_each      = local.run_tables
  name          = each.key
  database_name = aws_glue_catalog_database.faverecs.name
  table_type    = "EXTERNAL_TABLE"
  description   = "faverecs ${each.key}, every run; filter on run_id (see current_run)"

  partition_keys {
    name    = "run_id"
    type    = "string"
    comment = "The run (YYYYMMDDTHHMMSSZ-xxxxxx); current_run names the published one"
  }

  parameters = {
    "classification"            = "parquet"
    "projection.enabled"        = "true"
    "projection.run_id.type"    = "injected"
    "storage.location.template" = "${local.data_location}/runs/$${run_id}/${each.key}/"
  }

  storage_descriptor {
    location      = "${local.data_location}/runs/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"

    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    }

    dynamic "columns" {
      for_each = each.value
      content {
        name = columns.value.name
        type = columns.value.type
      }
    }
  }
}

resource "aws_glue_catalog_table" "raw" {
  for_each      = local.raw_tables
  name          = "raw_${each.key}"
  database_name = aws_glue_catalog_database.faverecs.name
  table_type    = "EXTERNAL_TABLE"
  description   = "faverecs raw table ${each.key}, as the last import or fold left it"

  parameters = {
    "classification" = "parquet"
  }

  storage_descriptor {
    location      = "${local.data_location}/raw/${each.key}/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"

    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    }

    dynamic "columns" {
      for_each = each.value
      content {
        name = columns.value.name
        type = columns.value.type
      }
    }
  }
}

# `publish` writes published/current.json (one line) after CURRENT.
resource "aws_glue_catalog_table" "current_run" {
  name          = "current_run"
  database_name = aws_glue_catalog_database.faverecs.name
  table_type    = "EXTERNAL_TABLE"
  description   = "The published run: one row"

  parameters = {
    "classification" = "json"
  }

  storage_descriptor {
    location      = "${local.data_location}/published/"
    input_format  = "org.apache.hadoop.mapred.TextInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"

    ser_de_info {
      serialization_library = "org.openx.data.jsonserde.JsonSerDe"
    }

    columns {
      name = "run_id"
      type = "string"
    }
    columns {
      name    = "published_at"
      type    = "string"
      comment = "RFC 3339, UTC"
    }
  }
}

resource "aws_athena_workgroup" "faverecs" {
  name = var.name

  configuration {
    enforce_workgroup_configuration    = true
    publish_cloudwatch_metrics_enabled = true

    result_configuration {
      output_location = "s3://${aws_s3_bucket.data.bucket}/athena-results/"
      encryption_configuration {
        encryption_option = "SSE_KMS"
        kms_key_arn       = aws_kms_key.data.arn
      }
    }
  }
}

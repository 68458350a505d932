#!/bin/sh
# One-shot MinIO set-up for infra/compose.yaml, run in the MinIO image (its mc client): the bucket,
# and the application's own user, whose policy (minio-app-policy.json) reaches that bucket only.
# The administrator's credentials stay here; the services never see them. Safe to run again.
set -eu
read -r SECRET < /run/secrets/s3_secret_key
[ "${#SECRET}" -ge 8 ] || { echo "secrets/s3_secret_key must hold 8 characters or more" >&2; exit 1; }
[ "$APP_S3_ACCESS_KEY" != "$MINIO_ROOT_USER" ] || { echo "APP_S3_ACCESS_KEY must not be the MinIO administrator" >&2; exit 1; }
mc alias set root http://minio:9000 "$MINIO_ROOT_USER" "$MINIO_ROOT_PASSWORD" >/dev/null
mc mb --ignore-existing "root/$BUCKET"
mc admin policy create root booth-app /setup/policy.json
mc admin user add root "$APP_S3_ACCESS_KEY" "$SECRET"
# Attaching a policy that is already attached is refused; what counts is that it is attached.
mc admin policy attach root booth-app --user "$APP_S3_ACCESS_KEY" || true
case "$(mc admin user info root "$APP_S3_ACCESS_KEY" --json)" in
*'"booth-app"'*) ;;
*) echo "the policy booth-app is not attached to $APP_S3_ACCESS_KEY" >&2; exit 1 ;;
esac
echo "bucket $BUCKET and user $APP_S3_ACCESS_KEY (policy booth-app) are ready"

"""Actions that let an identity gain more privilege than it was granted.

An access entry holding any of these is refused unless it says why (``escalation:
{reason: ...}``), and ``lint`` lists them. The lists follow the published AWS privilege
escalation paths (Rhino Security Labs) and their GCP and Azure counterparts, widened
with compute shells, role attachment, cluster access, stacks and state machines,
resource-policy writes and session credentials (security review M1).

Names are compared the way each cloud compares them: AWS and Azure without regard to
case (``iam:passrole`` is ``iam:PassRole``), GCP exactly. Every exact name here is in the
shipped catalog (:mod:`workload_ids.catalogs`; a test holds us to it).
"""

from __future__ import annotations

import re

_AWS_EXACT_NAMES = (
    # Passing and assuming roles, and sessions that carry chosen tags or policies.
    "iam:PassRole", "sts:AssumeRole", "sts:AssumeRoleWithWebIdentity", "sts:AssumeRoleWithSAML",
    "sts:GetFederationToken", "sts:TagSession",
    # Code that runs as another role.
    "lambda:CreateFunction", "lambda:UpdateFunctionCode", "lambda:UpdateFunctionConfiguration",
    "lambda:CreateEventSourceMapping", "lambda:AddPermission",
    "lambda:CreateFunctionUrlConfig", "lambda:UpdateFunctionUrlConfig",
    "glue:CreateDevEndpoint", "glue:UpdateDevEndpoint", "glue:CreateJob", "glue:UpdateJob",
    "datapipeline:CreatePipeline", "datapipeline:PutPipelineDefinition",
    "codebuild:CreateProject", "codebuild:UpdateProject", "codebuild:StartBuild",
    "sagemaker:CreateNotebookInstance", "sagemaker:CreatePresignedNotebookInstanceUrl",
    "sagemaker:CreateTrainingJob", "sagemaker:CreateProcessingJob",
    # Compute: launching with a role, attaching one, or a shell on what already runs.
    "ec2:RunInstances", "ec2:ModifyInstanceAttribute",
    "ec2:AssociateIamInstanceProfile", "ec2:ReplaceIamInstanceProfileAssociation",
    "ec2:CreateLaunchTemplate", "ec2:CreateLaunchTemplateVersion", "ec2:ModifyLaunchTemplate",
    "autoscaling:CreateAutoScalingGroup", "autoscaling:UpdateAutoScalingGroup",
    "autoscaling:CreateLaunchConfiguration",
    "ec2-instance-connect:SendSSHPublicKey", "ec2-instance-connect:SendSerialConsoleSSHPublicKey",
    "ecs:RunTask", "ecs:RegisterTaskDefinition", "ecs:StartTask", "ecs:UpdateService", "ecs:CreateService",
    "ecs:ExecuteCommand",
    "ssm:SendCommand", "ssm:StartSession", "ssm:ResumeSession", "ssm:StartAutomationExecution",
    # Cluster access.
    "eks:CreateAccessEntry", "eks:UpdateAccessEntry", "eks:AssociateAccessPolicy", "eks:UpdateClusterConfig",
    # Stacks and state machines run with their own (often broad) roles.
    "cloudformation:CreateStack", "cloudformation:UpdateStack", "cloudformation:CreateChangeSet",
    "cloudformation:ExecuteChangeSet", "cloudformation:SetStackPolicy",
    "cloudformation:CreateStackSet", "cloudformation:UpdateStackSet",
    "cloudformation:CreateStackInstances", "cloudformation:UpdateStackInstances",
    "states:StartExecution", "states:StartSyncExecution", "states:CreateStateMachine",
    "states:UpdateStateMachine",
    # Resource policies and grants: opening a resource to another principal.
    "organizations:AttachPolicy", "kms:CreateGrant", "kms:PutKeyPolicy",
    "secretsmanager:PutResourcePolicy", "s3:PutBucketPolicy", "s3:PutBucketAcl", "s3:PutObjectAcl",
    "sqs:SetQueueAttributes", "sqs:AddPermission", "sns:SetTopicAttributes", "sns:AddPermission",
    "ecr:SetRepositoryPolicy", "logs:PutResourcePolicy",
)
_AWS_EXACT = frozenset(n.lower() for n in _AWS_EXACT_NAMES)
# Any IAM or SSO write: creating users, keys, policies, roles or attaching them.
_AWS_PATTERN = re.compile(
    r"^(iam:(Create|Put|Attach|Update|Add|Set|Upload|Delete|Detach|Remove|Enable|Tag|Untag)"
    r"|sso:|identitystore:(Create|Update))", re.IGNORECASE)

_GCP_EXACT = frozenset({
    "iam.serviceAccountKeys.create", "cloudbuild.builds.create", "dataflow.jobs.create",
    "dataproc.clusters.create", "orgpolicy.policy.set", "compute.projects.setCommonInstanceMetadata",
    # Jobs, schedules and workflows run as a service account of the caller's choosing.
    "run.jobs.create", "run.jobs.update", "run.jobs.run", "run.jobs.runWithOverrides",
    "cloudscheduler.jobs.create", "cloudscheduler.jobs.update",
    "workflows.workflows.create", "workflows.workflows.update",
    # Shells and credentials on clusters and instances.
    "container.pods.exec", "container.pods.attach", "container.clusters.getCredentials",
    "container.serviceAccounts.createToken",
    "compute.instanceTemplates.create", "iap.tunnelInstances.accessViaIAP",
    # Long-lived credentials that are not the workload's identity.
    "storage.hmacKeys.create", "apikeys.keys.create", "apikeys.keys.getKeyString",
})
_GCP_PATTERN = re.compile(
    r"(\.setIamPolicy$|^iam\.serviceAccounts\.(actAs|getAccessToken|getOpenIdToken|signBlob|signJwt"
    r"|implicitDelegation|setIamPolicy|create|update)$"
    r"|^iam\.roles\.(create|update|undelete)$|^resourcemanager\..*\.setIamPolicy$"
    r"|^deploymentmanager\.deployments\.(create|update)$|^cloudfunctions\.functions\.(create|update"
    r"|sourceCodeSet)$|^run\.services\.(create|update)$|^compute\.instances\.(create|setMetadata"
    r"|setServiceAccount)$|^composer\.environments\.(create|update)$|^iam\.workloadIdentityPool)")

_AZURE_EXACT_NAMES = (
    "Microsoft.Compute/virtualMachines/runCommand/action",
    "Microsoft.Compute/virtualMachines/extensions/write",
    "Microsoft.Compute/virtualMachines/write", "Microsoft.Compute/virtualMachines/runCommands/write",
    "Microsoft.ContainerService/managedClusters/listClusterAdminCredential/action",
    "Microsoft.ContainerService/managedClusters/listClusterUserCredential/action",
    "Microsoft.Storage/storageAccounts/listAccountSas/action",
    "Microsoft.Storage/storageAccounts/listServiceSas/action",
    "Microsoft.ManagedIdentity/userAssignedIdentities/assign/action",
    "Microsoft.ManagedIdentity/userAssignedIdentities/write",
    "Microsoft.ManagedIdentity/userAssignedIdentities/federatedIdentityCredentials/write",
    "Microsoft.Web/sites/config/list/action", "Microsoft.Web/sites/write", "Microsoft.Web/sites/config/write",
    "Microsoft.Automation/automationAccounts/runbooks/write",
    "Microsoft.Automation/automationAccounts/jobs/write",
    "Microsoft.KeyVault/vaults/write", "Microsoft.Resources/deployments/write",
)
_AZURE_EXACT = frozenset(n.lower() for n in _AZURE_EXACT_NAMES)
# Families, and two providers the shipped catalog does not cover (Container Instances and
# Container Apps: both run a container as a managed identity of the caller's choosing).
_AZURE_PATTERN = re.compile(
    r"(^Microsoft\.Authorization/(roleAssignments|roleDefinitions|policyAssignments|elevateAccess"
    r"|locks)/|/accessPolicies/write$|/listKeys/action$|/regenerateKey/action$"
    r"|^Microsoft\.Web/sites/publishxml/action$"
    r"|^Microsoft\.ContainerInstance/containerGroups/(write|containers/exec/action)$"
    r"|^Microsoft\.App/(containerApps|jobs)/write$)",
    re.IGNORECASE)

# Reading a secret value or key is no escalation when the secret is the workload's own
# (that is what secret.read grants), but a raw entry that reads one deserves a reviewer's
# look: ``lint`` says so. Which secrets are the tool's own is guarded elsewhere.
_CREDENTIAL_READ_NAMES = {
    "aws": ("secretsmanager:GetSecretValue", "secretsmanager:BatchGetSecretValue", "ssm:GetParameter",
            "ssm:GetParameters", "ssm:GetParametersByPath"),
    "gcp": ("secretmanager.versions.access",),
    "azure": ("Microsoft.KeyVault/vaults/secrets/getSecret/action",
              "Microsoft.KeyVault/vaults/secrets/readMetadata/action"),
}
_CREDENTIAL_READS = {p: frozenset(n if p == "gcp" else n.lower() for n in names)
                     for p, names in _CREDENTIAL_READ_NAMES.items()}


def is_escalation(provider: str, action: str) -> bool:
    """Whether ``action`` on ``provider`` can be used to gain more privilege (AWS and
    Azure compared without regard to case, as the clouds compare them)."""
    if provider == "aws":
        return action.lower() in _AWS_EXACT or bool(_AWS_PATTERN.match(action))
    if provider == "gcp":
        return action in _GCP_EXACT or bool(_GCP_PATTERN.search(action))
    if provider == "azure":
        return action.lower() in _AZURE_EXACT or bool(_AZURE_PATTERN.search(action))
    return False


def is_credential_read(provider: str, action: str) -> bool:
    """Whether ``action`` reads a stored secret's value (not an escalation by itself)."""
    key = action if provider == "gcp" else action.lower()
    return key in _CREDENTIAL_READS.get(provider, frozenset())


def exact_names(provider: str) -> tuple[str, ...]:
    """The exact names the lists hold for ``provider`` (escalation and credential reads),
    as written (for the test that they all exist in the catalog)."""
    exact = {"aws": _AWS_EXACT_NAMES, "gcp": tuple(sorted(_GCP_EXACT)), "azure": _AZURE_EXACT_NAMES}
    return (*exact.get(provider, ()), *_CREDENTIAL_READ_NAMES.get(provider, ()))
